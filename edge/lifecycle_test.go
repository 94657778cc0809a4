package edge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/edge/mgmt/mgmttest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/radsectest"
)

// lifecycleDoc is a configuration document for the lifecycle tests, secret being the NAS secret.
func lifecycleDoc(dir string, lab *pkitest.Lab, up *radsectest.Responder, secret, metrics string) string {
	doc := fmt.Sprintf(`
cache: {path: %s}
control: {socket: %s}
listen: {auth: ["127.0.0.1:0"], acct: ["127.0.0.1:0"]}
clients:
  - {name: nas, address: 127.0.0.1, secret: %s}
upstreams:
  tls: {certificate: %s, key: %s, ca: %s}
  servers:
    - {name: up, address: "%s"}
`, filepath.Join(dir, "cache.db"), filepath.Join(dir, "control.sock"), secret, lab.ClientCert, lab.ClientKey, lab.CAFile, up.Addr())
	if metrics != "" {
		doc += fmt.Sprintf("metrics: {listen: %q}\n", metrics)
	}
	return doc
}

func loadDoc(t *testing.T, path, doc string) *config.Config {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startUpstream(t *testing.T, lab *pkitest.Lab) *radsectest.Responder {
	t.Helper()
	up, err := radsectest.Start(lab.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

// runEdge runs e until the returned stop is called; stop returns Run's error.
func runEdge(t *testing.T, e *edge.Edge) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("edge not ready")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestCheckTouchesNothing: Check validates a configuration while a running edge holds the cache's
// lock and the sockets, and creates no file of its own.
func TestCheckTouchesNothing(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	cfg := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), lifecycleDoc(dir, lab, up, "s", ""))
	e, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runEdge(t, e)
	if err := edge.Check(cfg); err != nil {
		t.Fatalf("check beside a running edge: %v", err)
	}
	other := t.TempDir()
	cfg2 := loadDoc(t, filepath.Join(other, "mxedge.yaml"), lifecycleDoc(other, lab, up, "s", ""))
	if err := edge.Check(cfg2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(other)
	if len(entries) != 1 {
		t.Fatalf("check left files behind: %v", entries)
	}
}

// TestNewCleansUpOnFailure: when a later start-up step fails (the accounting port is taken), New
// releases what it had opened: the cache's lock, the control socket and the metrics listener.
func TestNewCleansUpOnFailure(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ml.Addr().String()
	ml.Close()
	doc := strings.Replace(lifecycleDoc(dir, lab, up, "s", metricsAddr), `acct: ["127.0.0.1:0"]`,
		fmt.Sprintf(`acct: [%q]`, taken.LocalAddr().String()), 1)
	cfg := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), doc)
	if _, err := edge.New(cfg, edge.Options{MetricsAddr: metricsAddr}); err == nil {
		t.Fatal("New succeeded on a taken port")
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	if l, err := net.Listen("tcp", metricsAddr); err != nil {
		t.Errorf("metrics listener left open: %v", err)
	} else {
		l.Close()
	}
	store, err := cache.Open(cache.Options{Path: filepath.Join(dir, "cache.db"), OpenTimeout: time.Second})
	if err != nil {
		t.Fatalf("cache still locked: %v", err)
	}
	store.Close()
}

// registered starts a controller double serving doc and registers an edge with it in dir.
func registered(t *testing.T, dir, doc string) (*mgmttest.Server, *mgmt.Registration) {
	t.Helper()
	ctl := mgmttest.New(t, mgmttest.Options{Config: []byte(doc)})
	ctl.AddCode("code-1", mgmttest.CodeValid)
	res, err := mgmt.Register(t.Context(), mgmt.RegisterOptions{Code: "code-1", Cloud: ctl.URL, CA: ctl.CAPEM, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return ctl, res.Registration
}

// TestConcurrentReloads: SIGHUP, changed certificate files and configurations from the cloud sync
// arrive at once, several of each; they go through one queue, so no reload overlaps another
// (checked in the log), and the edge ends on the cloud's last configuration.
func TestConcurrentReloads(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	ctl, reg := registered(t, filepath.Join(dir, "state"), lifecycleDoc(dir, lab, up, "secret-0", ""))
	cfg, err := config.Load(reg.Config)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	sig := make(chan os.Signal, 1)
	e, err := edge.New(cfg, edge.Options{
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
		Signals:       sig,
		WatchInterval: 20 * time.Millisecond,
		ShutdownGrace: time.Second,
		Sync:          &mgmt.SyncOptions{Registration: reg, Interval: 30 * time.Millisecond, Jitter: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runEdge(t, e)
	auth := e.AuthAddrs()[0].String()

	const rounds = 4
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // SIGHUP
		defer wg.Done()
		for range rounds {
			sig <- syscall.SIGHUP
			time.Sleep(30 * time.Millisecond)
		}
	}()
	go func() { // a renewal tool rewrites the client certificate
		defer wg.Done()
		for i := range rounds {
			at := time.Now().Add(time.Duration(i+1) * time.Second)
			if err := os.Chtimes(lab.ClientCert, at, at); err != nil {
				t.Error(err)
			}
			time.Sleep(40 * time.Millisecond)
		}
	}()
	last := ""
	go func() { // the cloud publishes new configurations
		defer wg.Done()
		for i := range rounds {
			last = lifecycleDoc(dir, lab, up, fmt.Sprintf("secret-%d", i+1), "")
			ctl.SetConfig([]byte(last))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()

	// Every source got through, and the cloud's last document is the one served: no reload from
	// the file brought back an older one.
	final := fmt.Sprintf("secret-%d", rounds)
	deadline := time.Now().Add(20 * time.Second)
	for e.Syncer().Status().ConfigETag != mgmt.ETag([]byte(last)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := burst(t, auth, final, 1, time.Second); n != 1 {
		t.Fatalf("the last cloud configuration is not served\n%s", logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"reason=SIGHUP", `reason="certificate files changed`, `reason="cloud configuration"`} {
		if count(logs, reason) == 0 {
			t.Errorf("no reload with %s\n%s", reason, logs.String())
		}
	}
	// Serialized: each reload ends before the next begins.
	open := false
	for _, line := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(line, `msg="reloading configuration"`):
			if open {
				t.Fatalf("a reload started while another was in progress:\n%s", logs.String())
			}
			open = true
		case strings.Contains(line, `msg="configuration reloaded"`), strings.Contains(line, `msg="reload rejected`),
			strings.Contains(line, `msg="reload failed`):
			open = false
		}
	}
	if strings.Contains(logs.String(), "reload rejected") || strings.Contains(logs.String(), "reload failed") {
		t.Errorf("a reload was refused:\n%s", logs.String())
	}
}

func count(b *syncBuffer, s string) int { return strings.Count(b.String(), s) }

// TestRunLeavesNoGoroutines: after Run returns, every goroutine it started — components, the
// reload loop, watchers, the sync loop, drains of pools replaced by reloads — is gone.
func TestRunLeavesNoGoroutines(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	ctl, reg := registered(t, filepath.Join(dir, "state"), lifecycleDoc(dir, lab, up, "s", "127.0.0.1:0"))
	cfg, err := config.Load(reg.Config)
	if err != nil {
		t.Fatal(err)
	}
	_ = ctl
	baseline := runtime.NumGoroutine()
	sig := make(chan os.Signal, 1)
	e, err := edge.New(cfg, edge.Options{Signals: sig, WatchInterval: 20 * time.Millisecond, MetricsAddr: "127.0.0.1:0",
		Sync: &mgmt.SyncOptions{Registration: reg, Interval: 20 * time.Millisecond, Jitter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runEdge(t, e)
	up.SetDelay(300 * time.Millisecond) // the replaced pools have a request to drain
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); burst(t, e.AuthAddrs()[0].String(), "s", 5, 2*time.Second) }()
	time.Sleep(50 * time.Millisecond)
	for range 3 {
		if err := e.Reload(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	sig <- syscall.SIGHUP
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(t.Context(), cfg); !errors.Is(err, edge.ErrStopped) {
		t.Errorf("reload after Run returned: %v, want ErrStopped", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after Run returned, %d before New:\n%s", n, baseline, bytes.TrimSpace(buf))
	}
}

// TestSignalsStopRun: SIGTERM on Options.Signals shuts the edge down as a cancelled context does.
func TestSignalsStopRun(t *testing.T) {
	lab := pkitest.Must(t)
	up := startUpstream(t, lab)
	dir := t.TempDir()
	cfg := loadDoc(t, filepath.Join(dir, "mxedge.yaml"), lifecycleDoc(dir, lab, up, "s", ""))
	sig := make(chan os.Signal, 1)
	e, err := edge.New(cfg, edge.Options{Signals: sig})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background()) }()
	<-e.Ready()
	sig <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]edge.Options{
		"negative grace":            {ShutdownGrace: -time.Second},
		"negative watch interval":   {WatchInterval: -time.Second},
		"sync without registration": {Sync: &mgmt.SyncOptions{}},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
