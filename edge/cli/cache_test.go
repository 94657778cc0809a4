package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/control"
)

// cacheT0 is the fixed "now" of the cache command tests.
var cacheT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func testCacheEnv() cacheEnv {
	return cacheEnv{now: func() time.Time { return cacheT0 }, timeout: 2 * time.Second, openTimeout: 200 * time.Millisecond}
}

// cacheFixture is a database with known records and where its daemon's
// socket would be.
type cacheFixture struct {
	db, sock string
}

func newCacheFixture(t testing.TB) cacheFixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxcli") // short: sun_path is 108 octets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fx := cacheFixture{db: filepath.Join(dir, "cache.db"), sock: filepath.Join(dir, "control.sock")}
	s := openFixtureStore(t, fx.db)
	for _, r := range fixtureRecords() {
		if err := s.Upsert(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func openFixtureStore(t testing.TB, path string) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Options{Path: path, NoSync: true, Now: func() time.Time { return cacheT0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func fixtureRecords() []cache.Record {
	u32 := func(n uint32) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
	return []cache.Record{
		{MAC: "00:11:22:33:44:55", Identity: "001122334455", Method: cache.MethodMAB, NAS: "10.7.50.2", Site: "HQ",
			Attrs: []cache.Attr{
				{Type: 64, Tag: 1, Value: []byte{0, 0, 13}},
				{Type: 65, Tag: 1, Value: []byte{0, 0, 6}},
				{Type: 81, Tag: 1, Value: []byte("41")},
				{Type: 11, Value: []byte("guest-acl")},
				{Type: 27, Value: u32(3600)},
				{Type: 28, Value: u32(600)},
				{Type: 29, Value: u32(1)},
				{Type: 58, Value: []byte("2guests")},
				{Type: 18, Value: []byte("welcome")},
				{Type: 26, Vendor: 9, VendorType: 1, Value: []byte("security-group=guest")},
				{Type: 26, Vendor: 14823, VendorType: 1, Value: []byte("guest-role")},
				{Type: 26, Vendor: 14823, VendorType: 2, Value: u32(41)},
				{Type: 26, Vendor: 2636, VendorType: 1, Value: []byte("ro-user")},
				{Type: 26, Vendor: 25461, VendorType: 1, Value: []byte("auditor")},
				{Type: 26, Vendor: 9, VendorType: 254, Value: []byte{0xde, 0xad}},
				{Type: 26, Vendor: 99999, VendorType: 7, Value: []byte("x")},
				{Type: 200, Value: []byte{1, 2, 3}},
			},
			FirstSeen: cacheT0.Add(-48 * time.Hour), LastAuthorized: cacheT0.Add(-time.Hour), Expires: cacheT0.Add(6*24*time.Hour + 23*time.Hour)},
		{MAC: "aa:bb:cc:dd:ee:01", Identity: "Laptop1@example.com", Method: cache.MethodEAPTLS, NAS: "sw1", Site: "Branch 7",
			Attrs:     []cache.Attr{{Type: 81, Tag: 1, Value: []byte("corp")}},
			FirstSeen: cacheT0.Add(-2 * time.Hour), LastAuthorized: cacheT0.Add(-2 * time.Hour), Expires: cacheT0.Add(2*time.Hour + 5*time.Minute)},
		{Identity: "host1.example.com", Method: cache.MethodEAPTLS,
			FirstSeen: cacheT0.Add(-time.Hour), LastAuthorized: cacheT0.Add(-time.Hour), Expires: cacheT0.Add(42 * time.Second)},
	}
}

// startDaemon serves the fixture's database on its socket as mxedge would,
// until the test ends.
func startDaemon(t testing.TB, fx cacheFixture) *cache.Store {
	t.Helper()
	s := openFixtureStore(t, fx.db)
	srv, err := control.NewServer(control.Options{Path: fx.sock, Group: "-", Cache: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control Run: %v", err)
		}
	})
	return s
}

// runCache runs `mxedge cache args...` in-process.
func runCache(t testing.TB, fx cacheFixture, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newCacheCmdEnv(testCacheEnv())
	var out, errw bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errw)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(append(args, "--socket", fx.sock, "--db", fx.db))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

func cacheGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// The read commands print the same through the daemon and from the file.
func TestCacheReadCommands(t *testing.T) {
	for _, mode := range []string{"daemon", "direct"} {
		t.Run(mode, func(t *testing.T) {
			fx := newCacheFixture(t)
			if mode == "daemon" {
				startDaemon(t, fx)
			}
			for _, tc := range []struct {
				name   string
				args   []string
				golden string
			}{
				{"list", []string{"list"}, "cache_list.golden"},
				{"list limit", []string{"list", "--limit", "1"}, "cache_list_limit.golden"},
				{"list json", []string{"list", "--json"}, "cache_list_json.golden"},
				{"show mac", []string{"show", "00-11-22-33-44-55"}, "cache_show.golden"},
				{"show identity", []string{"show", "LAPTOP1@example.com"}, "cache_show_identity.golden"},
				{"show json", []string{"show", "--json", "0011.2233.4455"}, "cache_show_json.golden"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					out, _, err := runCache(t, fx, "", tc.args...)
					if err != nil {
						t.Fatal(err)
					}
					cacheGolden(t, tc.golden, out)
				})
			}
			t.Run("stats", func(t *testing.T) {
				out, _, err := runCache(t, fx, "", "stats")
				if err != nil {
					t.Fatal(err)
				}
				wantSource := "file " + fx.db
				if mode == "daemon" {
					wantSource = "mxedge daemon (" + fx.sock + ")"
				}
				for _, want := range []string{"entries                 3\n", wantSource, "database size"} {
					if !strings.Contains(out, want) {
						t.Errorf("stats output lacks %q:\n%s", want, out)
					}
				}
			})
			t.Run("show missing", func(t *testing.T) {
				_, _, err := runCache(t, fx, "", "show", "nobody@example.com")
				if err == nil || !strings.Contains(err.Error(), `no unexpired cache entry for "nobody@example.com"`) {
					t.Errorf("show missing: %v", err)
				}
			})
		})
	}
}

func TestCacheWriteCommands(t *testing.T) {
	for _, mode := range []string{"daemon", "direct"} {
		t.Run(mode, func(t *testing.T) {
			fx := newCacheFixture(t)
			if mode == "daemon" {
				startDaemon(t, fx)
			}
			out, _, err := runCache(t, fx, "", "delete", "AABBCCDDEE01")
			if err != nil || out != "deleted AABBCCDDEE01\n" {
				t.Errorf("delete = %q, %v", out, err)
			}
			if _, _, err := runCache(t, fx, "", "delete", "AABBCCDDEE01"); err == nil || !strings.Contains(err.Error(), "no cache entry") {
				t.Errorf("second delete: %v", err)
			}
			if _, _, err := runCache(t, fx, "", "purge"); !errors.Is(err, ErrUsage) {
				t.Errorf("purge without --expired: %v, want ErrUsage", err)
			}
			// Nothing has expired at cacheT0.
			out, _, err = runCache(t, fx, "", "purge", "--expired")
			if err != nil || out != "purged 0 expired entries\n" {
				t.Errorf("purge = %q, %v", out, err)
			}
			out, _, err = runCache(t, fx, "", "list")
			if err != nil || strings.Count(out, "\n") != 3 || strings.Contains(out, "aa:bb:cc:dd:ee:01") {
				t.Errorf("list after delete:\n%s%v", out, err)
			}
		})
	}
}

// Purge removes what expired: a direct open with a later clock.
func TestCachePurgeExpired(t *testing.T) {
	fx := newCacheFixture(t)
	env := testCacheEnv()
	env.now = func() time.Time { return cacheT0.Add(3 * time.Hour) }
	cmd := newCacheCmdEnv(env)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"purge", "--expired", "--socket", fx.sock, "--db", fx.db})
	if err := cmd.Execute(); err != nil || out.String() != "purged 2 expired entries\n" {
		t.Errorf("purge = %q, %v", out.String(), err)
	}
}

const badImport = `{"mac":"00:11:22:33:44:01","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}
{"mac":"not-a-mac","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}

{"mac":"00:11:22:33:44:02","method":"mab","last_authorized":"2026-11-22T11:00:00Z"}
{this is not json
{"identity":"old@example.com","method":"eap-tls","last_authorized":"2026-11-01T11:00:00Z"}
{"identity":"y@example.com","method":"wpa","last_authorized":"2026-11-22T11:00:00Z"}
`

func TestCacheImportBadLines(t *testing.T) {
	for _, mode := range []string{"daemon", "direct"} {
		t.Run(mode, func(t *testing.T) {
			fx := newCacheFixture(t)
			if mode == "daemon" {
				startDaemon(t, fx)
			}
			file := filepath.Join(t.TempDir(), "in.jsonl")
			if err := os.WriteFile(file, []byte(badImport), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := runCache(t, fx, "", "import", file)
			if want := "imported 2, skipped 0 older, 1 expired, 3 bad (lines: 2, 5, 7)\n"; out != want {
				t.Errorf("import printed %q, want %q", out, want)
			}
			if err == nil || !strings.Contains(err.Error(), "3 bad lines") {
				t.Errorf("import with bad lines returned %v, want an error", err)
			}
			for _, want := range []string{"line 2: ", "bad mac", "line 5: ", "line 7: ", "unknown method"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			// The good lines were kept.
			for _, mac := range []string{"00:11:22:33:44:01", "00:11:22:33:44:02"} {
				if _, _, err := runCache(t, fx, "", "show", mac); err != nil {
					t.Errorf("good line %s not imported: %v", mac, err)
				}
			}
			// From stdin, merging: all older now.
			good := strings.Join(strings.Split(badImport, "\n")[:1], "\n")
			out, _, err = runCache(t, fx, good, "import", "-", "--merge-newer")
			if err != nil || out != "imported 0, skipped 1 older, 0 expired, 0 bad\n" {
				t.Errorf("merge import = %q, %v", out, err)
			}
		})
	}
}

// export through the daemon, import into a database no daemon holds, and
// the two list the same.
func TestCacheExportImportRoundTrip(t *testing.T) {
	src := newCacheFixture(t)
	startDaemon(t, src)
	file := filepath.Join(t.TempDir(), "out", "snap.jsonl")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCache(t, src, "", "export", "-o", file)
	if err != nil || out != "exported 3 entries to "+file+"\n" {
		t.Fatalf("export = %q, %v", out, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file: %v, %v; want mode 0600", fi, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	dir := t.TempDir()
	dst := cacheFixture{db: filepath.Join(dir, "new", "cache.db"), sock: filepath.Join(dir, "none.sock")}
	out, _, err = runCache(t, dst, "", "import", file)
	if err != nil || out != "imported 3, skipped 0 older, 0 expired, 0 bad\n" {
		t.Fatalf("import = %q, %v", out, err)
	}
	a, _, err1 := runCache(t, src, "", "export")
	b, _, err2 := runCache(t, dst, "", "export")
	if err1 != nil || err2 != nil || a != b || a == "" {
		t.Errorf("round trip differs (%v, %v):\n%s\n%s", err1, err2, a, b)
	}
}

// A database locked by an mxedge whose socket does not answer gives a
// clear error quickly, for reads and writes, never a hang.
func TestCacheLockedDB(t *testing.T) {
	fx := newCacheFixture(t)
	holder, err := cache.Open(cache.Options{Path: fx.db, NoSync: true}) // the "daemon", without a socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close() }) // after the parallel subtests
	// Also with a stale socket file left by a crashed daemon.
	stale := cacheFixture{db: fx.db, sock: fx.sock + "2"}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, tc := range []struct {
		name string
		fx   cacheFixture
		args []string
	}{
		{"list", fx, []string{"list"}},
		{"stats", fx, []string{"stats"}},
		{"delete", fx, []string{"delete", "00:11:22:33:44:55"}},
		{"import", fx, []string{"import", "-"}},
		{"stale socket", stale, []string{"show", "00:11:22:33:44:55"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()         // each waits out the 1 s lock timeout on its own
			cmd := newCacheCmd() // the real timeouts
			cmd.SilenceErrors, cmd.SilenceUsage = true, true
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetIn(strings.NewReader(""))
			cmd.SetArgs(append(tc.args, "--socket", tc.fx.sock, "--db", tc.fx.db))
			start := time.Now()
			err := cmd.Execute()
			d := time.Since(start)
			if err == nil || !errors.Is(err, cache.ErrLocked) || !errors.Is(err, control.ErrNoDaemon) ||
				!strings.Contains(err.Error(), "the cache "+tc.fx.db+" is held by a running mxedge but its control socket "+tc.fx.sock+" is not answering") {
				t.Errorf("err = %v", err)
			}
			if d > 3*time.Second {
				t.Errorf("took %v, want < 3s", d)
			}
			t.Logf("%v: %v", d, err)
		})
	}
}

// A daemon that accepts and never answers is reported within the timeout.
func TestCacheMuteDaemon(t *testing.T) {
	base := runtime.NumGoroutine()
	fx := newCacheFixture(t)
	ln, err := net.Listen("unix", fx.sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	env := testCacheEnv()
	env.timeout = 300 * time.Millisecond
	cmd := newCacheCmdEnv(env)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"list", "--socket", fx.sock, "--db", fx.db})
	start := time.Now()
	err = cmd.Execute()
	if !errors.Is(err, control.ErrTimeout) || time.Since(start) > 2*time.Second {
		t.Errorf("mute daemon: %v after %v", err, time.Since(start))
	}
	ln.Close()
	<-done
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines %d, baseline %d", n, base)
	}
}

func TestCacheNoDatabase(t *testing.T) {
	dir := t.TempDir()
	fx := cacheFixture{db: filepath.Join(dir, "missing.db"), sock: filepath.Join(dir, "none.sock")}
	for _, args := range [][]string{{"list"}, {"delete", "x"}, {"purge", "--expired"}} {
		_, _, err := runCache(t, fx, "", args...)
		if err == nil || !strings.Contains(err.Error(), "no cache database at "+fx.db) {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := os.Stat(fx.db); err == nil {
		t.Error("a read or delete created the database")
	}
}

func TestAttrFormatting(t *testing.T) {
	for _, tc := range []struct {
		a          cache.Attr
		name, want string
	}{
		{cache.Attr{Type: 64, Tag: 1, Value: []byte{0, 0, 13}}, "Tunnel-Type:1", "VLAN (13)"},
		{cache.Attr{Type: 64, Value: []byte{0, 0, 0, 13}}, "Tunnel-Type", "VLAN (13)"},
		{cache.Attr{Type: 65, Tag: 2, Value: []byte{0, 0, 6}}, "Tunnel-Medium-Type:2", "IEEE-802 (6)"},
		{cache.Attr{Type: 81, Value: []byte("41")}, "Tunnel-Private-Group-Id", `"41"`},
		{cache.Attr{Type: 27, Value: []byte{0, 0, 0x0e, 0x10}}, "Session-Timeout", "3600 (1h0m0s)"},
		{cache.Attr{Type: 27, Value: []byte{1}}, "Session-Timeout", "0x01"},
		{cache.Attr{Type: 29, Value: []byte{0, 0, 0, 0}}, "Termination-Action", "Default (0)"},
		{cache.Attr{Type: 29, Value: []byte{0, 0, 0, 9}}, "Termination-Action", "9"},
		{cache.Attr{Type: 56, Value: []byte{'1', 0, 0, 41}}, "Egress-VLANID", "tagged VLAN 41"},
		{cache.Attr{Type: 58, Value: []byte("2guests")}, "Egress-VLAN-Name", `untagged "guests"`},
		{cache.Attr{Type: 8, Value: []byte{10, 0, 0, 1}}, "Framed-IP-Address", "10.0.0.1"},
		{cache.Attr{Type: 11, Value: []byte("a\tb")}, "Filter-Id", "0x610962"},
		{cache.Attr{Type: 26, Vendor: 9, VendorType: 1, Value: []byte("x=y")}, "Cisco-AVPair", `"x=y"`},
		{cache.Attr{Type: 26, Vendor: 14823, VendorType: 2, Value: []byte{0, 0, 0, 41}}, "Aruba-User-Vlan", "41"},
		{cache.Attr{Type: 26, Vendor: 2636, VendorType: 1, Value: []byte("u")}, "Juniper-Local-User-Name", `"u"`},
		{cache.Attr{Type: 26, Vendor: 25461, VendorType: 1, Value: []byte("r")}, "PaloAlto-Admin-Role", `"r"`},
		{cache.Attr{Type: 26, Vendor: 9, VendorType: 254, Value: []byte{0xde, 0xad}}, "Attr-26.9.254", "0xdead"},
		{cache.Attr{Type: 26, Vendor: 9, VendorType: 250, Value: []byte("acct")}, "Cisco-Account-Info", `"acct"`},
		{cache.Attr{Type: 26, Vendor: 4242, VendorType: 3, Value: []byte("v")}, "Attr-26.4242.3", `"v"`},
		{cache.Attr{Type: 240, Value: nil}, "Attr-240", `""`},
		{cache.Attr{Type: 26, Vendor: 14823, VendorType: 9, Value: []byte("guests")}, "Aruba-Named-User-Vlan", `"guests"`},
		{cache.Attr{Type: 95, Value: []byte{0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}, "NAS-IPv6-Address", "2001:db8::1"},
		{cache.Attr{Type: 25, Value: []byte{1, 2}}, "Class", "0x0102"},
		{cache.Attr{Type: 83, Tag: 1, Value: []byte{0, 0, 5}}, "Tunnel-Preference:1", "5"},
	} {
		if n, v := attrName(tc.a), attrValue(tc.a); n != tc.name || v != tc.want {
			t.Errorf("%+v: %s = %s, want %s = %s", tc.a, n, v, tc.name, tc.want)
		}
	}
}

func TestExpiresIn(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "expired"}, {0, "expired"}, {30 * time.Second, "30s"}, {42 * time.Minute, "42m"},
		{5*time.Hour + 12*time.Minute, "5h12m"}, {6*24*time.Hour + 23*time.Hour + 59*time.Minute, "6d23h"},
	} {
		if got := expiresIn(cacheT0.Add(tc.d), cacheT0); got != tc.want {
			t.Errorf("expiresIn(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// The wire form of show --json is an import line.
func TestShowJSONImports(t *testing.T) {
	fx := newCacheFixture(t)
	line, _, err := runCache(t, fx, "", "show", "--json", "00:11:22:33:44:55")
	if err != nil {
		t.Fatal(err)
	}
	r, err := control.DecodeRecord([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtureRecords()[0]; !reflect.DeepEqual(r, want) {
		t.Errorf("show --json decodes to\n%+v\nwant\n%+v", r, want)
	}
}

func TestCacheUsageErrors(t *testing.T) {
	fx := newCacheFixture(t)
	for _, args := range [][]string{{"bogus"}, {"show"}, {"show", "a", "b"}, {"list", "extra"}, {"list", "--limit", "-1"}, {"purge"}, {"import"}} {
		if _, _, err := runCache(t, fx, "", args...); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v, want ErrUsage", args, err)
		}
	}
}

// holdEnv names the database a helper child process opens and holds, as the
// daemon does, until its stdin closes.
const holdEnv = "MXEDGE_TEST_CACHE_HOLD"

func TestCacheHolderProcess(t *testing.T) {
	path := os.Getenv(holdEnv)
	if path == "" {
		return // only meaningful as the child of TestCacheLockedByOtherProcess
	}
	s, err := cache.Open(cache.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	_ = s.Close()
}

// The lock held by another process (bbolt's exclusive flock, as mxedge run
// holds it) gives the clear error quickly, never a hang.
func TestCacheLockedByOtherProcess(t *testing.T) {
	fx := newCacheFixture(t)
	child := exec.Command(os.Args[0], "-test.run=^TestCacheHolderProcess$")
	child.Env = append(os.Environ(), holdEnv+"="+fx.db)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = child.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	for _, args := range [][]string{{"list"}, {"import", "-"}} {
		cmd := newCacheCmd()
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetIn(strings.NewReader(""))
		cmd.SetArgs(append(args, "--socket", fx.sock, "--db", fx.db))
		start := time.Now()
		err := cmd.Execute()
		d := time.Since(start)
		if !errors.Is(err, cache.ErrLocked) || !strings.Contains(err.Error(), "held by a running mxedge") {
			t.Errorf("%v: %v", args, err)
		}
		if d > 3*time.Second {
			t.Errorf("%v took %v, want < 3s", args, d)
		}
		t.Logf("%v: %v", args, d)
	}
}
