package mgmt_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/edge/mgmt"
	"mxedge/edge/mgmt/mgmttest"
	"mxedge/pki"
)

// recorder is the daemon side of the Syncer: what Apply and MergeCache were handed.
type recorder struct {
	mu       sync.Mutex
	applied  [][]byte
	merged   [][]byte
	reloaded int
}

func (r *recorder) validate(_ string, doc []byte) error {
	if bytes.Contains(doc, []byte("bad")) {
		return errors.New("cloud.yaml:2: clients[0].secret: required")
	}
	return nil
}

func (r *recorder) apply(_ string, doc []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, bytes.Clone(doc))
	return nil
}

func (r *recorder) merge(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.merged = append(r.merged, b)
	return err
}

func (r *recorder) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloaded++
}

func (r *recorder) counts() (applied, merged, reloaded int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied), len(r.merged), r.reloaded
}

type syncEnv struct {
	srv   *mgmttest.Server
	reg   *mgmt.Registration
	rec   *recorder
	clock *fakeClock
	logs  *lockedBuffer
	s     *mgmt.Syncer
}

// newSyncEnv registers an edge against a controller double through the real flow, then builds a
// Syncer on a fake clock.
func newSyncEnv(t *testing.T, tweak func(*mgmt.SyncOptions)) *syncEnv {
	t.Helper()
	srv := mgmttest.New(t, mgmttest.Options{Config: []byte(goodConfig)})
	srv.AddCode("C", mgmttest.CodeValid)
	res, err := mgmt.Register(context.Background(), mgmt.RegisterOptions{Code: "C", Cloud: srv.URL, CA: srv.CAPEM, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return newSyncer(t, srv, res.Registration, tweak)
}

func newSyncer(t testing.TB, srv *mgmttest.Server, reg *mgmt.Registration, tweak func(*mgmt.SyncOptions)) *syncEnv {
	t.Helper()
	env := &syncEnv{srv: srv, reg: reg, rec: &recorder{}, clock: newFakeClock(time.Now())}
	logger, buf := testLogger(t)
	env.logs = buf
	o := mgmt.SyncOptions{
		Registration:   reg,
		ValidateConfig: env.rec.validate,
		Apply:          env.rec.apply,
		MergeCache:     env.rec.merge,
		Reloaded:       env.rec.reload,
		Logger:         logger,
		Now:            env.clock.Now,
		After:          env.clock.After,
		Rand:           func() float64 { return 0.5 }, // no jitter unless a test wants it
	}
	if tweak != nil {
		tweak(&o)
	}
	s, err := mgmt.NewSyncer(o)
	if err != nil {
		t.Fatal(err)
	}
	env.s = s
	return env
}

func TestSyncAppliesConfigAndClients(t *testing.T) {
	env := newSyncEnv(t, nil)
	ctx := context.Background()

	// Right after register the document on disk is the cloud's: its ETag matches, nothing to do.
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatalf("first round: %v", err)
	}
	if a, m, _ := env.rec.counts(); a != 0 || m != 1 {
		t.Errorf("first round: applied %d merged %d, want 0 and 1 (an empty snapshot)", a, m)
	}

	doc2 := []byte(goodConfig + "request_timeout: 3s\n")
	snap := []byte(`{"mac":"00:11:22:33:44:55","method":"mab","last_authorized":"2026-11-22T10:00:00Z"}` + "\n")
	env.srv.SetConfig(doc2)
	env.srv.SetClients(snap)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatalf("second round: %v", err)
	}
	env.rec.mu.Lock()
	if len(env.rec.applied) != 1 || !bytes.Equal(env.rec.applied[0], doc2) {
		t.Errorf("applied = %q, want [%q]", env.rec.applied, doc2)
	}
	if len(env.rec.merged) != 2 || !bytes.Equal(env.rec.merged[1], snap) {
		t.Errorf("merged = %q, want the snapshot", env.rec.merged)
	}
	env.rec.mu.Unlock()
	if b, _ := os.ReadFile(env.reg.Config); !bytes.Equal(b, doc2) {
		t.Errorf("cloud.yaml = %q, want the applied document (a restart serves it)", b)
	}
	st := env.s.Status()
	if st.ConfigETag != mgmt.ETag(doc2) || st.ClientsETag != mgmt.ETag(snap) || st.LastApplied.IsZero() || st.LastError != "" {
		t.Errorf("status = %+v", st)
	}

	// Unchanged documents: 304, no Apply, no merge.
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatalf("third round: %v", err)
	}
	if a, m, _ := env.rec.counts(); a != 1 || m != 2 {
		t.Errorf("after a 304 round: applied %d merged %d, want 1 and 2", a, m)
	}
	if n := env.srv.Requests("GET " + mgmt.PathConfig(env.reg.EdgeID)); n != 3 {
		t.Errorf("config requests = %d, want 3", n)
	}
}

func TestSyncRejectsBadConfig(t *testing.T) {
	env := newSyncEnv(t, nil)
	ctx := context.Background()
	good := []byte(goodConfig + "request_timeout: 3s\n")
	env.srv.SetConfig(good)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	env.srv.SetConfig([]byte("clients:\n  - name: bad\n"))
	for round := range 2 {
		err := env.s.SyncOnce(ctx)
		if !errors.Is(err, mgmt.ErrConfigRejected) {
			t.Fatalf("round %d: err = %v, want ErrConfigRejected", round, err)
		}
	}
	if a, _, _ := env.rec.counts(); a != 1 {
		t.Errorf("Apply called %d times, want 1 (the bad document never reaches it)", a)
	}
	if b, _ := os.ReadFile(env.reg.Config); !bytes.Equal(b, good) {
		t.Errorf("cloud.yaml = %q, want the last good document", b)
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "cloud configuration rejected") ||
		!strings.Contains(logs, "clients[0].secret: required") {
		t.Errorf("logs do not name the rejection and its reason:\n%s", logs)
	}
	st := env.s.Status()
	if st.ConfigRejects != 2 || st.ConfigETag != mgmt.ETag(good) || st.Failures != 0 {
		t.Errorf("status = %+v", st)
	}
	// Fixed in the cloud: applied on the next round.
	fixed := []byte(goodConfig + "request_timeout: 2s\n")
	env.srv.SetConfig(fixed)
	if err := env.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if a, _, _ := env.rec.counts(); a != 2 {
		t.Errorf("Apply called %d times after the fix, want 2", a)
	}
}

func TestSyncApplyFailureKeepsFile(t *testing.T) {
	env := newSyncEnv(t, func(o *mgmt.SyncOptions) {
		o.Apply = func(string, []byte) error { return errors.New("edge: reload: listener busy") }
	})
	before, _ := os.ReadFile(env.reg.Config)
	env.srv.SetConfig([]byte(goodConfig + "request_timeout: 3s\n"))
	if err := env.s.SyncOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "listener busy") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(env.reg.Config); !bytes.Equal(b, before) {
		t.Error("a document Apply refused was saved")
	}
	// Not saved, so the next round tries again.
	if st := env.s.Status(); st.ConfigETag != mgmt.ETag(before) {
		t.Errorf("etag moved to a document that was not applied: %+v", st)
	}
}

// TestSyncLongOutage: the controller drops every connection for days of simulated time. The loop
// backs off from BackoffMin to BackoffMax, never exits, never calls Apply, keeps goroutines
// bounded, and syncs again at the normal interval once the controller is back.
func TestSyncLongOutage(t *testing.T) {
	env := newSyncEnv(t, func(o *mgmt.SyncOptions) { o.Rand = nil }) // real jitter
	env.srv.SetDown(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	base := runtime.NumGoroutine()
	go func() { done <- env.s.Run(ctx) }()

	var simulated time.Duration
	var delays []time.Duration
	maxG := 0
	const rounds = 200
	for range rounds {
		d := env.clock.next(t)
		delays = append(delays, d)
		simulated += d
		maxG = max(maxG, runtime.NumGoroutine())
	}
	if simulated < 3*24*time.Hour {
		t.Errorf("simulated only %s of outage", simulated)
	}
	within := func(d, want time.Duration) bool {
		return d >= want*9/10 && d <= want*11/10
	}
	wantFirst := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 30 * time.Minute}
	for i, w := range wantFirst {
		if !within(delays[i], w) {
			t.Errorf("delay %d = %s, want %s ±10%%", i, delays[i], w)
		}
	}
	for i := len(wantFirst); i < rounds; i++ {
		if !within(delays[i], 30*time.Minute) {
			t.Fatalf("delay %d = %s, want the 30m cap ±10%%", i, delays[i])
		}
	}
	// Bounded: one loop goroutine plus at most a few transient connection goroutines.
	if maxG > base+10 {
		t.Errorf("goroutines grew from %d to %d during the outage", base, maxG)
	}
	if st := env.s.Status(); st.Failures != rounds {
		t.Errorf("failures = %d, want %d", st.Failures, rounds)
	}
	if a, m, _ := env.rec.counts(); a != 0 || m != 0 {
		t.Errorf("applied %d merged %d during the outage", a, m)
	}
	if !strings.Contains(env.logs.String(), "cloud unreachable: serving on the running configuration") {
		t.Error("the outage was not logged")
	}

	// The controller returns with a new document: applied, and the loop goes back to 30m.
	env.srv.SetDown(false)
	env.srv.SetConfig([]byte(goodConfig + "request_timeout: 3s\n"))
	env.clock.next(t) // the round after this delay reaches the controller
	if d := env.clock.next(t); !within(d, 30*time.Minute) {
		t.Errorf("after recovery the delay is %s, want 30m ±10%%", d)
	}
	if a, _, _ := env.rec.counts(); a != 1 {
		t.Errorf("applied %d after recovery, want 1", a)
	}
	if st := env.s.Status(); st.Failures != 0 {
		t.Errorf("failures = %d after recovery", st.Failures)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitGoroutines(t, base)
}

// waitGoroutines waits (bounded) for the goroutine count to come back to base: connection
// goroutines of the closed transport exit asynchronously.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSyncUnauthorizedEdge(t *testing.T) {
	env := newSyncEnv(t, nil)
	env.srv.Forget(env.reg.EdgeID)
	err := env.s.SyncOnce(context.Background())
	if !errors.Is(err, mgmt.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(env.logs.String(), "register it again") {
		t.Errorf("logs:\n%s", env.logs)
	}
}

func TestSyncRenewsCertificate(t *testing.T) {
	tests := []struct {
		name      string
		left      time.Duration
		wantRenew bool
	}{
		{"far from expiry", 60 * 24 * time.Hour, false},
		{"within 30 days", 10 * 24 * time.Hour, true},
		{"last day", 12 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newSyncEnv(t, nil)
			// Replace the registered certificate by one with tt.left to live, same key.
			key, err := pki.LoadKey(env.reg.Key)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			cert, err := env.srv.IssueEdge(env.reg.EdgeID, key, now.Add(-time.Hour), now.Add(tt.left))
			if err != nil {
				t.Fatal(err)
			}
			if err := pki.WriteCertificates(env.reg.Certificate, true, cert); err != nil {
				t.Fatal(err)
			}
			env = newSyncer(t, env.srv, env.reg, nil)
			if err := env.s.SyncOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			renewed := env.srv.Requests("POST "+mgmt.PathRenew(env.reg.EdgeID)) == 1
			if renewed != tt.wantRenew {
				t.Fatalf("renewed = %v, want %v", renewed, tt.wantRenew)
			}
			certs, err := pki.LoadCertificates(env.reg.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			_, _, reloaded := env.rec.counts()
			if !tt.wantRenew {
				if !certs[0].Equal(cert) || reloaded != 0 {
					t.Error("certificate changed without renewal")
				}
				return
			}
			if certs[0].Equal(cert) || !certs[0].NotAfter.After(now.Add(80*24*time.Hour)) {
				t.Errorf("certificate on disk not renewed: not after %s", certs[0].NotAfter)
			}
			if _, err := pki.LoadKeyPair(env.reg.Certificate, env.reg.Key); err != nil {
				t.Errorf("renewed certificate does not match the key: %v", err)
			}
			if reloaded != 1 {
				t.Errorf("Reloaded called %d times, want 1", reloaded)
			}
			if st := env.s.Status(); !st.CertNotAfter.Equal(certs[0].NotAfter) {
				t.Errorf("status not after %s, want %s", st.CertNotAfter, certs[0].NotAfter)
			}
			// The next round authenticates with the renewed certificate and does not renew again.
			if err := env.s.SyncOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := env.srv.Requests("POST " + mgmt.PathRenew(env.reg.EdgeID)); n != 1 {
				t.Errorf("renew requests = %d, want 1", n)
			}
		})
	}
}

func TestSyncOptionsValidate(t *testing.T) {
	reg := &mgmt.Registration{Version: 1, EdgeID: "e", Cloud: "https://x", Certificate: "c", Key: "k", CABundle: "a", Config: "y"}
	ok := func(string, []byte) error { return nil }
	tests := []struct {
		name string
		o    mgmt.SyncOptions
	}{
		{"no registration", mgmt.SyncOptions{ValidateConfig: ok, Apply: ok}},
		{"no apply", mgmt.SyncOptions{Registration: reg, ValidateConfig: ok}},
		{"negative interval", mgmt.SyncOptions{Registration: reg, ValidateConfig: ok, Apply: ok, Interval: -1}},
		{"jitter 1", mgmt.SyncOptions{Registration: reg, ValidateConfig: ok, Apply: ok, Jitter: 1}},
		{"bad regfile", mgmt.SyncOptions{Registration: &mgmt.Registration{Version: 2}, ValidateConfig: ok, Apply: ok}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err == nil {
				t.Error("Validate accepted bad options")
			}
		})
	}
}

func TestSyncExpiredCertificate(t *testing.T) {
	env := newSyncEnv(t, nil)
	key, err := pki.LoadKey(env.reg.Key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := env.srv.IssueEdge(env.reg.EdgeID, key, now.Add(-48*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCertificates(env.reg.Certificate, true, cert); err != nil {
		t.Fatal(err)
	}
	env = newSyncer(t, env.srv, env.reg, nil)
	err = env.s.SyncOnce(context.Background())
	if !errors.Is(err, mgmt.ErrTLS) {
		t.Fatalf("err = %v, want ErrTLS (the controller refuses the handshake)", err)
	}
	if logs := env.logs.String(); !strings.Contains(logs, "edge certificate expired: register the edge again") {
		t.Errorf("logs:\n%s", logs)
	}
	if a, _, _ := env.rec.counts(); a != 0 {
		t.Error("applied a configuration")
	}
}
