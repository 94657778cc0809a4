package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/lab"
)

// update rewrites the golden files of the tests that run instead of comparing with them; scope it
// with -run (go test ./edge/cli -run TestCache -update). Under -run Pki it also regenerates the
// fixed lab PKI in testdata/pki.
var update = flag.Bool("update", false, "rewrite the golden files of the tests that run")

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := New(BuildInfo{Version: "1.2.3", Commit: "abc1234", Date: "2026-11-22T00:00:00Z"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("mxedge 1.2.3\ncommit abc1234\nbuilt 2026-11-22T00:00:00Z\n%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if out != want {
		t.Fatalf("version output:\n%s\nwant:\n%s", out, want)
	}
}

func TestUsageErrors(t *testing.T) {
	if _, err := execute(t, "run", "--no-such-flag"); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
}

func labConfig(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := lab.Start(ctx, lab.Options{Dir: t.TempDir(), Auth: loopback(freeUDPPort(t)), Acct: loopback(freeUDPPort(t)), CoA: loopback(0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); l.Wait() })
	return l.ConfigPath
}

func loopback(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func TestCheck(t *testing.T) {
	path := labConfig(t)
	out, err := execute(t, "check", "--config", path)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	// The lab NAS and the eduroam preset's national server.
	if !strings.Contains(out, "OK (2 NAS clients, 1 upstreams, radsec listener off, cluster off)") {
		t.Fatalf("check output %q", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("clients:\n  - name: x\n    adress: 10.0.0.1\n"), 0o600)
	_, err = execute(t, "check", "--config", bad)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), bad+`:3: unknown key "adress"`) {
		t.Fatalf("check of a bad file: %v", err)
	}
	// A site the survivability block does not list, once sites are listed.
	doc, _ := os.ReadFile(path)
	unknownSite := filepath.Join(t.TempDir(), "sites.yaml")
	os.WriteFile(unknownSite, []byte(strings.Replace(string(doc), "survivability:\n", "survivability:\n  sites:\n    - {name: elsewhere}\n", 1)), 0o600)
	if _, err = execute(t, "check", "--config", unknownSite); !errors.Is(err, config.ErrInvalid) ||
		!strings.Contains(err.Error(), unknownSite+":") || !strings.Contains(err.Error(), "clients[0].site:") {
		t.Fatalf("check of a client at an unlisted site: %v", err)
	}
	if _, err := execute(t, "check", "--config", "/nonexistent.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestRunSignals runs the real binary: SIGHUP with a good file reloads, SIGHUP with a broken file
// keeps the running configuration, SIGTERM shuts down cleanly with exit status 0.
func TestRunSignals(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	path := labConfig(t)
	// A NOTIFY_SOCKET the test owns, as systemd's would be.
	sock := filepath.Join(t.TempDir(), "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	notes := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := nconn.ReadFromUnix(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(s string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("mxedge exited before logging %q", s)
				}
				if strings.Contains(l, s) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q in the log", s)
			}
		}
	}
	waitFor("mxedge started")
	seen := map[string]bool{}
	waitNote := func(prefix string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !seen[prefix] {
			select {
			case n := <-notes:
				for _, l := range strings.Split(n, "\n") {
					for _, p := range []string{"READY=1", "STATUS=", "WATCHDOG=1", "RELOADING=1", "STOPPING=1"} {
						if strings.HasPrefix(l, p) {
							seen[p] = true
						}
					}
				}
			case <-deadline:
				t.Fatalf("no %s from mxedge on NOTIFY_SOCKET", prefix)
			}
		}
	}
	waitNote("READY=1")
	waitNote("STATUS=")
	waitNote("WATCHDOG=1")
	// A renewed certificate file (same content, new mtime) is picked up without a signal.
	cfgText, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(cfgText), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "certificate: "); ok {
			future := time.Now().Add(time.Minute)
			os.Chtimes(v, future, future)
			break
		}
	}
	waitFor("certificate files changed")
	waitFor("configuration reloaded")
	orig, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(orig, []byte("vendor: cisco"), []byte("vendor: aruba"), 1), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("configuration reloaded")
	waitNote("RELOADING=1")
	os.WriteFile(path, []byte("clients: [\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("reload rejected: keeping the running configuration")
	cmd.Process.Signal(syscall.SIGTERM)
	waitFor("stopped")
	waitNote("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestSocketActivation: a UDP socket handed over by the service manager (LISTEN_FDS) serves RADIUS
// instead of the configured address.
func TestSocketActivation(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	path := labConfig(t)
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := udp.File()
	addr := udp.LocalAddr().String()
	udp.Close()
	// LISTEN_PID must be the service's own pid: sh sets it, then execs mxedge in its place.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=auth exec "$0" run --config "$1"`, bin, path)
	cmd.ExtraFiles = []*os.File{f}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := []byte{12, 7, 0, 38} // Status-Server with Message-Authenticator
	req = append(req, make([]byte, 16)...)
	req = append(req, 80, 18)
	req = append(req, make([]byte, 16)...)
	signStatus(req)
	buf := make([]byte, 4096)
	for range 50 {
		conn.Write(req)
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && n >= 20 && buf[0] == 2 {
			if !strings.Contains(logs.String(), "using activated socket") {
				t.Fatalf("answered, but the log does not say the activated socket is used:\n%s", logs.String())
			}
			return
		}
	}
	t.Fatalf("no answer on the activated socket %s\n%s", addr, logs.String())
}

// signStatus fills in the Message-Authenticator of a Status-Server with the lab secret.
func signStatus(p []byte) {
	mac := hmac.New(md5.New, []byte(lab.Secret))
	mac.Write(p)
	copy(p[22:38], mac.Sum(nil))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func peertestRequire(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed: make test installs freeradius-utils (%v)", b, err)
		}
	}
}
