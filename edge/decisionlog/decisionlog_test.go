package decisionlog

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// syncBuffer is a log sink safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestLog returns a Log writing text lines without timestamps, at a fixed clock.
func newTestLog(t *testing.T, o Options) (*Log, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{ReplaceAttr: func(g []string, a slog.Attr) slog.Attr {
		if len(g) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	if o.Now == nil {
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		o.Now = func() time.Time { return now }
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l, out
}

// drain runs l until everything queued is written, then stops it.
func drain(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run writes what is queued, then returns
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

var entries = []Entry{
	{Code: CodeAccept, NAS: "core-sw1", Port: "GigabitEthernet1/0/7", MAC: "02-00-00-00-00-01", User: "02-00-00-00-00-01",
		Method: "mab", VLAN: "41", Decider: "cloud", Upstream: "mist", Site: "hq"},
	{Code: CodeReject, NAS: "wlc1", Port: "13", SSID: "corp", MAC: "02-00-00-00-00-02", User: "bob@example.com",
		Method: "eap-tls", Decider: "cloud", Upstream: "mist"},
	{Code: CodeAccept, NAS: "core-sw1", Port: "GigabitEthernet1/0/8", MAC: "02-00-00-00-00-03", User: "02-00-00-00-00-03",
		Method: "mab", VLAN: "41", Decider: "cache", Reason: "cache-hit", Site: "hq"},
	{Code: CodeAccept, NAS: "wlc1", SSID: "corp", MAC: "02-00-00-00-00-04", User: "laptop.example.com", Method: "eap-tls",
		VLAN: "98", Decider: "default", Reason: "default-vlan"},
	{Code: CodeReject, NAS: "wlc1", SSID: "corp", MAC: "02-00-00-00-00-05", User: "old.example.com", Method: "eap-tls",
		Decider: "policy", Reason: "cert-expired"},
	{Code: CodeNone, NAS: "core-sw1", User: "netadmin", Method: "pap", Decider: "policy", Reason: "no-answer"},
	{CoA: true, Code: CodeDisconnectACK, NAS: "core-sw1", MAC: "02-00-00-00-00-06", User: "alice", Method: "disconnect",
		Decider: "cloud", Reason: "ack by session", Upstream: "mist"},
	{CoA: true, Code: CodeCoANAK, NAS: "wlc1", Method: "coa", Decider: "reconcile", Reason: "timeout by nas-ip-address error-cause 506"},
	// An eduroam visitor accepted by a national server, and a realm the route itself rejects.
	{Code: CodeAccept, NAS: "wlc1", SSID: "eduroam", MAC: "02-00-00-00-00-07", User: "anonymous@visited.example", Method: "eap-tls",
		Decider: "external", Upstream: "nro1", Route: "eduroam-visitor", Pool: "eduroam-national", Realm: "visited.example"},
	{Code: CodeReject, NAS: "eduroam-nro1", User: "x@elsewhere.example", Method: "pap", Decider: "route", Reason: "route-reject",
		Route: "eduroam-unknown-realm", Pool: "reject", Realm: "elsewhere.example"},
}

// TestDecisionLines pins the decision log's lines (docs/operations.md, "Decision log").
func TestDecisionLines(t *testing.T) {
	l, out := newTestLog(t, Options{})
	for _, e := range entries {
		l.Record(e)
	}
	drain(t, l)
	golden(t, "decisions.golden", out.String())
	if st := l.Stats(); st != (Stats{Written: uint64(len(entries))}) {
		t.Fatalf("stats %+v", st)
	}
}

// TestRateLimit: each budget allows one second's worth of lines; the rest is counted and
// summarized, accepts and rejects apart, so a flood of one cannot hide the other.
func TestRateLimit(t *testing.T) {
	l, out := newTestLog(t, Options{Rate: 5, RejectRate: 3, Queue: 64})
	for range 20 {
		l.Record(entries[0])
	}
	for range 10 {
		l.Record(entries[1])
	}
	drain(t, l)
	s := out.String()
	if n := strings.Count(s, "code=Access-Accept"); n != 5 {
		t.Errorf("%d accept lines, want 5", n)
	}
	if n := strings.Count(s, "code=Access-Reject"); n != 3 {
		t.Errorf("%d reject lines, want 3", n)
	}
	if want := `msg="decision lines suppressed" accepts=15 rejects=7 dropped=0 dur=10s`; !strings.Contains(s, want) {
		t.Errorf("no %q in\n%s", want, s)
	}
	if st := l.Stats(); st != (Stats{Written: 8, Suppressed: 22}) {
		t.Errorf("stats %+v", st)
	}
}

// TestRateRefills: the budget refills with the clock.
func TestRateRefills(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l, _ := newTestLog(t, Options{Rate: 2, Queue: 64, Now: clock})
	w := &writer{}
	for range 4 {
		l.write(w, entries[0])
	}
	mu.Lock()
	now = now.Add(500 * time.Millisecond) // one more token
	mu.Unlock()
	for range 2 {
		l.write(w, entries[0])
	}
	if st := l.Stats(); st.Written != 3 || st.Suppressed != 3 {
		t.Fatalf("stats %+v, want 3 written, 3 suppressed", st)
	}
}

// TestRecordNeverBlocks: with the writer stopped and the queue full, Record returns at once and
// counts the drop; it does not allocate.
func TestRecordNeverBlocks(t *testing.T) {
	l, out := newTestLog(t, Options{Queue: 4})
	for range 10 {
		l.Record(entries[1])
	}
	if st := l.Stats(); st.Dropped != 6 {
		t.Fatalf("dropped %d, want 6", st.Dropped)
	}
	drain(t, l)
	if !strings.Contains(out.String(), "accepts=0 rejects=0 dropped=6") {
		t.Fatalf("no summary of the drops:\n%s", out.String())
	}
	e := entries[0]
	if n := testing.AllocsPerRun(1000, func() { l.Record(e) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

// TestModes: rejects logs only rejects and non-answers; off nothing; Reconfigure applies at once.
func TestModes(t *testing.T) {
	l, out := newTestLog(t, Options{Mode: ModeRejects})
	for _, e := range entries {
		l.Record(e)
	}
	drain(t, l)
	if n, s := strings.Count(out.String(), "access decision"), out.String(); n != 4 || strings.Contains(s, "Access-Accept") {
		t.Fatalf("rejects mode wrote %d lines:\n%s", n, s)
	}
	if err := l.Reconfigure(ModeOff, 0, 0); err != nil {
		t.Fatal(err)
	}
	l.Record(entries[1])
	if err := l.Reconfigure(ModeOn, 0, 0); err != nil {
		t.Fatal(err)
	}
	l.Record(entries[0])
	drain(t, l)
	if n := strings.Count(out.String(), "access decision"); n != 5 {
		t.Fatalf("%d lines after off and on, want 5:\n%s", n, out.String())
	}
	if err := l.Reconfigure(ModeOn, -1, 0); err == nil {
		t.Fatal("negative rate accepted")
	}
	if _, err := ParseMode("sometimes"); err == nil {
		t.Fatal("bad mode accepted")
	}
}

// TestRunStopsOnCancel: Run writes entries as they come and returns nil once cancelled.
func TestRunStopsOnCancel(t *testing.T) {
	l, out := newTestLog(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Record(entries[2])
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "cache-hit") {
		if time.Now().After(deadline) {
			t.Fatal("entry not written")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// BenchmarkRecord is the request path's cost of feeding the log: a copy into the queue, which a
// writer drains meanwhile (its lines discarded).
func BenchmarkRecord(b *testing.B) {
	l, err := New(Options{Rate: MaxRate, RejectRate: MaxRate})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	e := entries[0]
	b.ReportAllocs()
	for b.Loop() {
		l.Record(e)
	}
	cancel()
	<-done
}
