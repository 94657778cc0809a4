package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// fakeClock lets expiry be tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t testing.TB, clk *fakeClock) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Options{Path: filepath.Join(t.TempDir(), "cache.db"), Now: clk.Now, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// socketPath returns a short socket path in a temp dir (sun_path is 108 octets).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "control.sock")
}

// startServer runs a server until the test ends and checks that Run returns
// nil and removes the socket.
func startServer(t testing.TB, o Options, mod func(*Server)) (*Server, *Client) {
	t.Helper()
	if o.Path == "" {
		o.Path = socketPath(t)
	}
	o.Group = "-"
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(s)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if _, err := os.Lstat(o.Path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket %s not removed: %v", o.Path, err)
		}
	})
	return s, Dial(o.Path)
}

// checkGoroutines waits for the goroutine count to return to base.
func checkGoroutines(t testing.TB, base int) {
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

func attrs() []cache.Attr {
	return []cache.Attr{
		{Type: 64, Tag: 1, Value: []byte{0, 0, 13}},
		{Type: 65, Tag: 1, Value: []byte{0, 0, 6}},
		{Type: 81, Tag: 1, Value: []byte("41")},
		{Type: 26, Vendor: 9, VendorType: 1, Value: []byte("security-group=guest")},
	}
}

// seed stores three clients: two MAB by MAC, one EAP-TLS by identity only.
func seed(t testing.TB, s *cache.Store) []cache.Record {
	t.Helper()
	recs := []cache.Record{
		{MAC: "00:11:22:33:44:55", Identity: "001122334455", Method: cache.MethodMAB, NAS: "10.7.50.2", Site: "HQ",
			Attrs: attrs(), FirstSeen: t0.Add(-48 * time.Hour), LastAuthorized: t0.Add(-time.Hour), Expires: t0.Add(6 * 24 * time.Hour)},
		{MAC: "aa:bb:cc:dd:ee:01", Identity: "laptop1@example.com", Method: cache.MethodEAPTLS, NAS: "sw1", Site: "Branch",
			FirstSeen: t0.Add(-2 * time.Hour), LastAuthorized: t0.Add(-2 * time.Hour), Expires: t0.Add(2 * time.Hour)},
		{Identity: "host1.example.com", Method: cache.MethodEAPTLS,
			FirstSeen: t0.Add(-time.Hour), LastAuthorized: t0.Add(-time.Hour), Expires: t0.Add(24 * time.Hour)},
	}
	for _, r := range recs {
		if err := s.Upsert(r); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

func listAll(t testing.TB, c *Client, limit int) []cache.Record {
	t.Helper()
	var out []cache.Record
	if err := c.CacheList(context.Background(), limit, func(r cache.Record) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func storeList(t testing.TB, s *cache.Store) []cache.Record {
	t.Helper()
	var out []cache.Record
	if err := s.List(func(r cache.Record) bool { out = append(out, r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCacheEndpoints(t *testing.T) {
	base := runtime.NumGoroutine()
	clk := &fakeClock{t: t0}
	store := openStore(t, clk)
	recs := seed(t, store)
	t.Run("server", func(t *testing.T) {
		_, c := startServer(t, Options{Cache: store}, nil)
		ctx := context.Background()

		st, err := c.CacheStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Entries != 3 || st.DBSize == 0 {
			t.Errorf("stats = %+v, want 3 entries and a size", st)
		}

		got := listAll(t, c, 0)
		if want := storeList(t, store); !reflect.DeepEqual(got, want) {
			t.Errorf("list over the socket differs from the store:\n got %+v\nwant %+v", got, want)
		}
		if n := len(listAll(t, c, 2)); n != 2 {
			t.Errorf("list --limit 2 gave %d records", n)
		}

		for _, tc := range []struct {
			key     string
			wantMAC string
			wantID  string
			ok      bool
		}{
			{"00:11:22:33:44:55", "00:11:22:33:44:55", "001122334455", true},
			{"00-11-22-33-44-55", "00:11:22:33:44:55", "001122334455", true},
			{"0011.2233.4455", "00:11:22:33:44:55", "001122334455", true},
			{"LAPTOP1@example.com", "aa:bb:cc:dd:ee:01", "laptop1@example.com", true},
			{"host1.example.com", "", "host1.example.com", true},
			{"nobody@example.com", "", "", false},
			{"00:00:00:00:00:01", "", "", false},
		} {
			t.Run("show "+tc.key, func(t *testing.T) {
				r, ok, err := c.CacheShow(ctx, tc.key)
				if err != nil || ok != tc.ok || r.MAC != tc.wantMAC || r.Identity != tc.wantID {
					t.Errorf("CacheShow(%q) = %q/%q, %v, %v; want %q/%q, %v", tc.key, r.MAC, r.Identity, ok, err, tc.wantMAC, tc.wantID, tc.ok)
				}
			})
		}
		r, _, _ := c.CacheShow(ctx, "001122334455")
		if !reflect.DeepEqual(r.Attrs, recs[0].Attrs) || !r.LastAuthorized.Equal(recs[0].LastAuthorized) || !r.Expires.Equal(recs[0].Expires) {
			t.Errorf("show lost fields: %+v", r)
		}

		// Export, then import into an empty store through a second server.
		var exp bytes.Buffer
		if err := c.CacheExport(ctx, &exp); err != nil {
			t.Fatal(err)
		}
		var direct bytes.Buffer
		if err := store.Export(&direct); err != nil {
			t.Fatal(err)
		}
		if exp.String() != direct.String() {
			t.Errorf("export over the socket differs from Store.Export")
		}
		store2 := openStore(t, clk)
		_, c2 := startServer(t, Options{Cache: store2}, nil)
		rep, err := c2.CacheImport(ctx, bytes.NewReader(exp.Bytes()), false)
		if err != nil || rep.Imported != 3 || rep.Bad != 0 {
			t.Fatalf("import = %+v, %v", rep, err)
		}
		if a, b := storeList(t, store), storeList(t, store2); !reflect.DeepEqual(a, b) {
			t.Errorf("round trip differs:\n%+v\n%+v", a, b)
		}
		// merge=newer: the same snapshot again is all older.
		rep, err = c2.CacheImport(ctx, bytes.NewReader(exp.Bytes()), true)
		if err != nil || rep.Imported != 0 || rep.Older != 3 {
			t.Errorf("merge newer = %+v, %v", rep, err)
		}

		// Delete by MAC notation, then by identity.
		if ok, err := c.CacheDelete(ctx, "AA-BB-CC-DD-EE-01"); !ok || err != nil {
			t.Errorf("delete by mac = %v, %v", ok, err)
		}
		if ok, err := c.CacheDelete(ctx, "aabbccddee01"); ok || err != nil {
			t.Errorf("second delete = %v, %v; want false", ok, err)
		}
		if ok, err := c.CacheDelete(ctx, "HOST1.example.com"); !ok || err != nil {
			t.Errorf("delete by identity = %v, %v", ok, err)
		}

		// Purge: after 7 days the remaining record has expired.
		clk.Advance(7 * 24 * time.Hour)
		n, err := c.CachePurgeExpired(ctx)
		if err != nil || n != 1 {
			t.Errorf("purge = %d, %v; want 1", n, err)
		}
		if st, _ := c.CacheStats(ctx); st.Entries != 0 {
			t.Errorf("entries after purge = %d", st.Entries)
		}
	})
	checkGoroutines(t, base)
}

func TestImportBadLines(t *testing.T) {
	clk := &fakeClock{t: t0}
	store := openStore(t, clk)
	_, c := startServer(t, Options{Cache: store}, nil)
	in := strings.Join([]string{
		`{"mac":"00:11:22:33:44:01","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}`,
		`{"mac":"not-a-mac","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}`,
		``,
		`{"mac":"00:11:22:33:44:02","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}`,
		`{this is not json`,
		`{"identity":"x@example.com","method":"eap-tls","last_authorized":"2026-11-01T11:00:00Z"}`,
		`{"identity":"y@example.com","method":"wpa","last_authorized":"2026-11-22T11:00:00Z"}`,
	}, "\n")
	rep, err := c.CacheImport(context.Background(), strings.NewReader(in), false)
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, e := range rep.Errors {
		lines = append(lines, e.Line)
		if e.Err == nil || e.Err.Error() == "" {
			t.Errorf("line %d has no reason", e.Line)
		}
	}
	if rep.Imported != 2 || rep.Bad != 3 || rep.Expired != 1 || !reflect.DeepEqual(lines, []int{2, 5, 7}) {
		t.Errorf("report = %+v (lines %v)", rep, lines)
	}
	if got := len(storeList(t, store)); got != 2 {
		t.Errorf("store holds %d records, want the 2 good ones", got)
	}
}

func TestErrors(t *testing.T) {
	clk := &fakeClock{t: t0}
	store := openStore(t, clk)
	s, c := startServer(t, Options{Cache: store}, func(s *Server) { s.maxImport = 1024 })
	_, noCache := startServer(t, Options{}, nil)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.Path())
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	for _, tc := range []struct {
		method, url string
		code        int
		want        string
	}{
		{"GET", "/v2/nothing", 404, "no endpoint"},
		{"POST", "/v1/cache/stats", 405, "wants GET"},
		{"GET", "/v1/cache/delete?key=x", 405, "wants POST"},
		{"GET", "/v1/cache/list?limit=-1", 400, "not a count"},
		{"GET", "/v1/cache/list?limit=x", 400, "not a count"},
		{"GET", "/v1/cache/show", 400, "needs a key"},
		{"GET", "/v1/cache/show?key=nobody", 404, "no unexpired cache entry"},
		{"POST", "/v1/cache/delete", 400, "needs a key"},
		{"POST", "/v1/cache/import?merge=older", 400, "only \"newer\""},
	} {
		t.Run(tc.method+tc.url, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://mxedge"+tc.url, nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error string }
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.want) ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.url, resp.StatusCode, e.Error, tc.code, tc.want)
			}
		})
	}

	t.Run("no cache", func(t *testing.T) {
		_, err := noCache.CacheStats(context.Background())
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != 503 || !strings.Contains(re.Message, "not enabled") {
			t.Errorf("stats without a cache = %v", err)
		}
	})
	t.Run("import too large", func(t *testing.T) {
		line := `{"mac":"00:11:22:33:44:01","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}` + "\n"
		rep, err := c.CacheImport(context.Background(), strings.NewReader(strings.Repeat(line, 100)), false)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != http.StatusRequestEntityTooLarge || !strings.Contains(re.Message, "larger than 1024 bytes") {
			t.Fatalf("oversized import = %+v, %v", rep, err)
		}
		if rep.Lines == 0 {
			t.Errorf("the partial report is lost: %+v", rep)
		}
	})
}

func TestStatus(t *testing.T) {
	_, c := startServer(t, Options{Status: func() any { return map[string]string{"mode": "proxy"} }}, nil)
	got, err := c.Status(context.Background())
	if err != nil || strings.TrimSpace(string(got)) != `{"mode":"proxy"}` {
		t.Errorf("status = %s, %v", got, err)
	}
	_, c = startServer(t, Options{}, nil)
	if got, err := c.Status(context.Background()); err != nil || strings.TrimSpace(string(got)) != `{}` {
		t.Errorf("nil status = %s, %v", got, err)
	}
}

func TestNoDaemon(t *testing.T) {
	path := socketPath(t)
	c := Dial(path)
	if err := c.Probe(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("missing socket: %v, want ErrNoDaemon", err)
	}
	if _, err := c.CacheStats(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("missing socket stats: %v, want ErrNoDaemon", err)
	}
	// A stale socket: bound, then its process gone.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := c.Probe(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("stale socket: %v, want ErrNoDaemon", err)
	}
	// The server replaces it.
	_, c = startServer(t, Options{Path: path}, nil)
	if err := c.Probe(context.Background()); err != nil {
		t.Errorf("after replacing the stale socket: %v", err)
	}
}

func TestListenRefuses(t *testing.T) {
	t.Run("live socket", func(t *testing.T) {
		s, _ := startServer(t, Options{}, nil)
		s2, err := NewServer(Options{Path: s.Path(), Group: "-"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Listen(); !errors.Is(err, ErrInUse) {
			t.Errorf("second server: %v, want ErrInUse", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		path := socketPath(t)
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(Options{Path: path, Group: "-"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep" {
			t.Error("the file was touched")
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"relative", Options{Path: "control.sock"}, false},
		{"too long", Options{Path: "/" + strings.Repeat("x", 110)}, false},
		{"mode bits", Options{Path: "/run/x.sock", Mode: fs.ModeSetuid | 0o660}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadOptions)) {
				t.Errorf("Validate = %v, ok want %v", err, tc.ok)
			}
		})
	}
}

func TestSocketMode(t *testing.T) {
	s, _ := startServer(t, Options{Mode: 0o600}, nil)
	fi, err := os.Lstat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if _, err := os.Lstat(s.Path() + tmpSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary socket name left behind: %v", err)
	}
}

// A daemon that accepts but never answers gives ErrTimeout, not a hang.
func TestClientTimeout(t *testing.T) {
	base := runtime.NumGoroutine()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	c := Dial(path)
	c.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, err = c.CacheStats(context.Background())
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("stats against a mute daemon: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v", d)
	}
	// A large import upload to a daemon that stops reading also times out.
	start = time.Now()
	_, err = c.CacheImport(context.Background(), io.LimitReader(zeroReader{}, 64<<20), false)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("import against a mute daemon: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("import gave up after %v", d)
	}
	ln.Close()
	<-acceptDone
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	checkGoroutines(t, base)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// slowCache wraps a store with a slow purge and a failing list.
type slowCache struct {
	*cache.Store
	purgeDelay time.Duration
	listErr    error
}

func (s *slowCache) PurgeExpired() (int, error) {
	time.Sleep(s.purgeDelay)
	return 7, nil
}

func (s *slowCache) List(fn func(cache.Record) bool) error {
	if err := s.Store.List(fn); err != nil {
		return err
	}
	return s.listErr
}

// A purge longer than the client's timeout succeeds thanks to heartbeats.
func TestPurgeHeartbeat(t *testing.T) {
	clk := &fakeClock{t: t0}
	sc := &slowCache{Store: openStore(t, clk), purgeDelay: 700 * time.Millisecond}
	_, c := startServer(t, Options{Cache: sc}, func(s *Server) { s.heartbeat = 50 * time.Millisecond })
	c.Timeout = 250 * time.Millisecond
	n, err := c.CachePurgeExpired(context.Background())
	if err != nil || n != 7 {
		t.Errorf("slow purge = %d, %v", n, err)
	}
}

// A stream that fails after it started is an error for the client, never
// a short list that looks complete.
func TestStreamAbort(t *testing.T) {
	clk := &fakeClock{t: t0}
	sc := &slowCache{Store: openStore(t, clk), listErr: errors.New("disk on fire")}
	seed(t, sc.Store)
	_, c := startServer(t, Options{Cache: sc}, nil)
	n := 0
	err := c.CacheList(context.Background(), 0, func(cache.Record) bool { n++; return true })
	if err == nil {
		t.Errorf("list that failed midway returned nil after %d records", n)
	}
}

// Run returns only after in-flight handlers finish.
func TestShutdownWaitsForHandlers(t *testing.T) {
	base := runtime.NumGoroutine()
	clk := &fakeClock{t: t0}
	sc := &slowCache{Store: openStore(t, clk), purgeDelay: 300 * time.Millisecond}
	path := socketPath(t)
	s, err := NewServer(Options{Path: path, Cache: sc, Group: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := Dial(path)
	for c.Probe(context.Background()) != nil {
		time.Sleep(5 * time.Millisecond)
	}
	purged := make(chan error, 1)
	go func() { _, err := c.CachePurgeExpired(context.Background()); purged <- err }()
	time.Sleep(100 * time.Millisecond) // the purge is in flight
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	select {
	case err := <-purged:
		if err != nil {
			t.Errorf("in-flight purge: %v", err)
		}
	default:
		t.Error("Run returned before the in-flight purge finished")
		<-purged
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket not removed: %v", err)
	}
	checkGoroutines(t, base)
}

func TestRecordWireRoundTrip(t *testing.T) {
	for _, r := range []cache.Record{
		{MAC: "00:11:22:33:44:55", Identity: "001122334455", Method: cache.MethodMAB, NAS: "n", Site: "s", Attrs: attrs(),
			FirstSeen: t0, LastAuthorized: t0.Add(time.Nanosecond), Expires: t0.Add(time.Hour)},
		{Identity: "h", Method: cache.MethodEAPTLS},
		{MAC: "00:11:22:33:44:56", Method: cache.MethodOther, LastAuthorized: t0},
	} {
		b, err := json.Marshal(RecordToWire(r))
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
}

// The wire form is the cache's JSON Lines form: a list line imports.
func TestWireIsExportFormat(t *testing.T) {
	clk := &fakeClock{t: t0}
	store := openStore(t, clk)
	seed(t, store)
	var exp bytes.Buffer
	if err := store.Export(&exp); err != nil {
		t.Fatal(err)
	}
	var mine bytes.Buffer
	enc := json.NewEncoder(&mine)
	enc.SetEscapeHTML(false)
	for _, r := range storeList(t, store) {
		if err := enc.Encode(RecordToWire(r)); err != nil {
			t.Fatal(err)
		}
	}
	if mine.String() != exp.String() {
		t.Errorf("wire form differs from Store.Export:\n%s\n%s", mine.String(), exp.String())
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"mac":"00:11:22:33:44:55","method":"mab","attrs":[{"type":81,"tag":1,"value":"3431"}],"last_authorized":"2026-11-22T10:00:00Z"}`))
	f.Add([]byte(`{"identity":"h","method":"eap-tls"}`))
	f.Add([]byte(`{"method":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			return
		}
		b2, err := json.Marshal(RecordToWire(r))
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := DecodeRecord(b2)
		if err != nil {
			t.Fatalf("decode of own encoding: %v\n%s", err, b2)
		}
		if !reflect.DeepEqual(normalizeEmpty(r), normalizeEmpty(r2)) {
			t.Fatalf("round trip:\n%+v\n%+v", r, r2)
		}
	})
}

// normalizeEmpty maps empty attribute values to nil: hex "" decodes to an
// empty slice either way.
func normalizeEmpty(r cache.Record) cache.Record {
	for i := range r.Attrs {
		if len(r.Attrs[i].Value) == 0 {
			r.Attrs[i].Value = nil
		}
	}
	return r
}

func ExampleClient() {
	c := Dial(DefaultPath)
	st, err := c.CacheStats(context.Background())
	if errors.Is(err, ErrNoDaemon) {
		fmt.Println("mxedge is not running")
		return
	}
	fmt.Println(st.Entries, err)
}
