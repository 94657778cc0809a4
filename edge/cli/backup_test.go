package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/control"
	"mxedge/edge/lab"
	"mxedge/edge/mgmt"
	"mxedge/survivability/spool"
)

func testBackupEnv() backupEnv {
	return backupEnv{now: func() time.Time { return cacheT0 }, timeout: 2 * time.Second, openTimeout: 200 * time.Millisecond}
}

// stateFixture is a state directory as the daemon leaves it: cache, spool, regfile and key.
type stateFixture struct {
	dir, sock string
	files     map[string][]byte // plain files written
}

func newStateFixture(t *testing.T) stateFixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxbk") // short: the socket lives here too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fx := stateFixture{dir: dir, sock: filepath.Join(dir, "control.sock"), files: map[string][]byte{
		mgmt.RegfileName:  []byte(`{"version":1,"edge_id":"edge-7"}` + "\n"),
		mgmt.KeyName:      []byte("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n"),
		mgmt.CertName:     []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"),
		mgmt.CABundleName: []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"),
	}}
	for name, b := range fx.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, backupMode(name)); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

func openStateCache(t testing.TB, path string) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Options{Path: path, NoSync: true, Now: func() time.Time { return cacheT0 }, OpenTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openStateSpool(t testing.TB, path string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(spool.Options{Path: path, Now: func() time.Time { return cacheT0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// acctPacket is a minimal Accounting-Request the spool accepts (RFC 2866 §4.1), i its session.
func acctPacket(i int) []byte {
	sid := fmt.Sprintf("S-%06d", i)
	p := []byte{4, byte(i), 0, 0}
	p = append(p, make([]byte, 16)...)
	p = append(p, 40, 6, 0, 0, 0, 1) // Acct-Status-Type = Start
	p = append(p, 44, byte(2+len(sid)))
	p = append(p, sid...)
	p[2], p[3] = byte(len(p)>>8), byte(len(p))
	return p
}

func mac(i int) string { return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }

func runBackupCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runOps(t, newBackupCmdEnv(BuildInfo{Version: "1.4.0"}, testBackupEnv()), args...)
}

func runRestoreCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runOps(t, newRestoreCmdEnv(testBackupEnv()), args...)
}

// TestBackupRestoreStopped: with no daemon, backup reads the files itself; restore into an empty
// state directory gives back every record and every file, with its mode.
func TestBackupRestoreStopped(t *testing.T) {
	fx := newStateFixture(t)
	c := openStateCache(t, filepath.Join(fx.dir, "cache.db"))
	sp := openStateSpool(t, filepath.Join(fx.dir, "spool.db"))
	for i := range 50 {
		if err := c.Upsert(cache.Record{MAC: mac(i), Method: cache.MethodMAB, LastAuthorized: cacheT0.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Append(spool.Entry{Client: "sw1", Src: "10.0.0.1:1646", Packet: acctPacket(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	sp.Close()

	archive := filepath.Join(t.TempDir(), "edge.backup")
	out, err := runBackupCmd(t, "-f", archive, "--state-dir", fx.dir, "--socket", fx.sock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "(files)") || !strings.Contains(out, "cache.db") || !strings.Contains(out, "spool.db") {
		t.Fatalf("backup said:\n%s", out)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode: %v %v", fi.Mode(), err)
	}
	// The manifest (mxedge.backup.v1); the databases' bytes depend on bbolt's layout and the
	// host name on the machine: placeholders.
	manifest := readTar(t, readFileT(t, archive))[0]
	if manifest.name != manifestName {
		t.Fatalf("first entry %s", manifest.name)
	}
	assertPublicSchema(t, string(manifest.body), backupSchema, false)
	host, _ := os.Hostname()
	norm := regexp.MustCompile(`("name": "(cache|spool)\.db",\n\s+"kind": "bbolt",\n\s+"mode": "0600",\n\s+"size_bytes": )\d+(,\n\s+"sha256": ")[0-9a-f]+`).
		ReplaceAllString(strings.Replace(string(manifest.body), `"hostname": "`+host+`"`, `"hostname": "HOST"`, 1), "${1}SIZE${3}SHA256")
	opsGolden(t, "backup_manifest_v1.json.golden", norm)
	fresh := filepath.Join(t.TempDir(), "state")
	if out, err := runRestoreCmd(t, "-f", archive, "--state-dir", fresh, "--socket", filepath.Join(fresh, "none.sock")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	assertRestored(t, fx, fresh, 50, 50)
}

// assertRestored checks the restored state directory: the first wantCache MACs in the cache, the
// first wantSpool sessions in the spool, the plain files byte for byte with their modes.
func assertRestored(t *testing.T, fx stateFixture, dir string, wantCache, wantSpool int) {
	t.Helper()
	for name, b := range fx.files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %q (%v)", name, got, err)
		}
		fi, _ := os.Stat(filepath.Join(dir, name))
		if fi.Mode().Perm() != backupMode(name) {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), backupMode(name))
		}
	}
	for _, db := range []string{"cache.db", "spool.db"} {
		if fi, _ := os.Stat(filepath.Join(dir, db)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", db, fi.Mode().Perm())
		}
	}
	c := openStateCache(t, filepath.Join(dir, "cache.db"))
	if st := c.Stats(); st.Entries != wantCache {
		t.Errorf("restored cache: %d entries, want %d", st.Entries, wantCache)
	}
	for i := range wantCache {
		if _, ok, err := c.LookupMAC(mac(i)); !ok || err != nil {
			t.Errorf("restored cache lacks %s (%v)", mac(i), err)
		}
	}
	c.Close()
	sp := openStateSpool(t, filepath.Join(dir, "spool.db"))
	if sp.Len() != wantSpool {
		t.Errorf("restored spool: %d records, want %d", sp.Len(), wantSpool)
	}
	// Replay (delivering every record) reads them back in order: sessions 0..wantSpool-1.
	var mu sync.Mutex
	var seen []string
	if _, err := sp.Replay(context.Background(), 1, func(e spool.Entry, _ time.Duration, done func(error)) {
		mu.Lock()
		seen = append(seen, string(e.Packet[28:]))
		mu.Unlock()
		done(nil)
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != wantSpool {
		t.Fatalf("replayed %d spool records, want %d", len(seen), wantSpool)
	}
	for i := range wantSpool {
		if want := fmt.Sprintf("S-%06d", i); seen[i] != want {
			t.Fatalf("spool record %d is %s, want %s", i, seen[i], want)
		}
	}
	sp.Close()
}

// TestBackupUnderLoad: a daemon serving its cache and spool on the control socket while a bounded
// writer adds to both; a backup taken meanwhile is a consistent prefix (every record acknowledged
// before the backup began, and no gap after), and one taken after the writer stops restores every
// acknowledged record into a fresh state directory.
func TestBackupUnderLoad(t *testing.T) {
	fx := newStateFixture(t)
	c := openStateCache(t, filepath.Join(fx.dir, "cache.db"))
	sp := openStateSpool(t, filepath.Join(fx.dir, "spool.db"))
	startSnapshotDaemon(t, fx.sock, c, sp)

	const total = 1500 // bounded load
	var acked atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			if err := c.Upsert(cache.Record{MAC: mac(i), Method: cache.MethodMAB, LastAuthorized: cacheT0.Add(-time.Minute)}); err != nil {
				t.Error(err)
				return
			}
			if _, err := sp.Append(spool.Entry{Client: "sw1", Src: "10.0.0.1:1646", Packet: acctPacket(i)}); err != nil {
				t.Error(err)
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	waitUntil(t, func() bool { return acked.Load() >= 200 })
	before := int(acked.Load())
	archive := filepath.Join(t.TempDir(), "during.backup")
	out, err := runBackupCmd(t, "-f", archive, "--state-dir", fx.dir, "--socket", fx.sock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "(daemon)") {
		t.Fatalf("backup did not go through the daemon:\n%s", out)
	}
	during := int(acked.Load())
	wg.Wait()
	t.Logf("backup under load: %d records acknowledged before it began, %d when it ended, of %d", before, during, total)

	fresh := filepath.Join(t.TempDir(), "state")
	if _, err := runRestoreCmd(t, "-f", archive, "--state-dir", fresh, "--socket", filepath.Join(fresh, "none.sock")); err != nil {
		t.Fatal(err)
	}
	rc := openStateCache(t, filepath.Join(fresh, "cache.db"))
	n := rc.Stats().Entries
	rc.Close()
	rs := openStateSpool(t, filepath.Join(fresh, "spool.db"))
	m := rs.Len()
	rs.Close()
	t.Logf("the snapshot holds %d cache entries and %d spool records", n, m)
	if n < before || n > during || m < before || m > during+1 {
		t.Fatalf("snapshot: cache %d, spool %d; want each between %d and %d", n, m, before, during)
	}
	assertRestored(t, fx, fresh, n, m) // a prefix: records 0..n-1, none missing

	archive2 := filepath.Join(t.TempDir(), "after.backup")
	if _, err := runBackupCmd(t, "-f", archive2, "--state-dir", fx.dir, "--socket", fx.sock); err != nil {
		t.Fatal(err)
	}
	fresh2 := filepath.Join(t.TempDir(), "state")
	if _, err := runRestoreCmd(t, "-f", archive2, "--state-dir", fresh2, "--socket", filepath.Join(fresh2, "none.sock")); err != nil {
		t.Fatal(err)
	}
	assertRestored(t, fx, fresh2, total, total)
}

// startSnapshotDaemon serves the stores' snapshots as edge.New wires them (edge/backup.go).
func startSnapshotDaemon(t *testing.T, sock string, c *cache.Store, sp *spool.Spool) {
	t.Helper()
	srv, err := control.NewServer(control.Options{Path: sock, Group: "-", Cache: c,
		Snapshots: map[string]control.SnapshotFunc{"cache.db": c.WriteSnapshot, "spool.db": sp.WriteSnapshot}})
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
}

// TestRestoreRefuses: a running edge, a locked database, existing files without --force, and
// every kind of damaged archive are refused with the reason, and nothing is installed.
func TestRestoreRefuses(t *testing.T) {
	fx := newStateFixture(t)
	c := openStateCache(t, filepath.Join(fx.dir, "cache.db"))
	if err := c.Upsert(cache.Record{MAC: mac(1), Method: cache.MethodMAB}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	archive := filepath.Join(t.TempDir(), "edge.backup")
	if _, err := runBackupCmd(t, "-f", archive, "--state-dir", fx.dir, "--socket", fx.sock); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("running", func(t *testing.T) {
		c := openStateCache(t, filepath.Join(fx.dir, "cache.db"))
		sp := openStateSpool(t, filepath.Join(t.TempDir(), "spool.db"))
		startSnapshotDaemon(t, fx.sock, c, sp)
		_, err := runRestoreCmd(t, "-f", archive, "--state-dir", t.TempDir(), "--socket", fx.sock)
		if !errors.Is(err, ErrRestore) || !strings.Contains(err.Error(), "mxedge is running") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		openStateCache(t, filepath.Join(dir, "cache.db")) // holds the lock, no socket
		_, err := runRestoreCmd(t, "-f", archive, "--state-dir", dir, "--socket", filepath.Join(dir, "none.sock"), "--force")
		if !errors.Is(err, ErrRestore) || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("existing", func(t *testing.T) {
		_, err := runRestoreCmd(t, "-f", archive, "--state-dir", fx.dir, "--socket", filepath.Join(t.TempDir(), "none.sock"))
		if !errors.Is(err, ErrRestore) || !strings.Contains(err.Error(), "use --force") {
			t.Fatalf("err = %v", err)
		}
		if _, err := runRestoreCmd(t, "-f", archive, "--state-dir", fx.dir, "--socket", filepath.Join(t.TempDir(), "none.sock"), "--force"); err != nil {
			t.Fatalf("--force: %v", err)
		}
	})

	// Damaged archives, each rebuilt from the good one.
	entries := readTar(t, good)
	for _, tc := range []struct {
		name   string
		mutate func(es []tarEntry) []tarEntry
		want   string
	}{
		{"flipped byte", func(es []tarEntry) []tarEntry { es[1].body[len(es[1].body)/2] ^= 1; return es }, "SHA-256"},
		{"missing file", func(es []tarEntry) []tarEntry { return es[:len(es)-1] }, "not in the archive"},
		{"extra file", func(es []tarEntry) []tarEntry { return append(es, tarEntry{"evil.sh", []byte("x")}) }, "not in the manifest"},
		{"traversal", func(es []tarEntry) []tarEntry {
			es[0].body = bytes.Replace(es[0].body, []byte(`"name": "edge.key"`), []byte(`"name": "../edge.key"`), 1)
			return es
		}, "not a file a backup holds"},
		{"no manifest", func(es []tarEntry) []tarEntry { return es[1:] }, "not a backup archive"},
		{"schema", func(es []tarEntry) []tarEntry {
			es[0].body = bytes.Replace(es[0].body, []byte(backupSchema), []byte("mxedge.backup.v9"), 1)
			return es
		}, "mxedge.backup.v9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := tc.mutate(cloneEntries(entries))
			bad := filepath.Join(t.TempDir(), "bad.backup")
			if err := os.WriteFile(bad, writeTar(t, es), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			_, err := runRestoreCmd(t, "-f", bad, "--state-dir", dir, "--socket", filepath.Join(dir, "none.sock"))
			if !errors.Is(err, ErrRestore) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("a refused restore left %v", left)
			}
		})
	}
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type tarEntry struct {
	name string
	body []byte
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	var es []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, tarEntry{h.Name, body})
	}
}

func cloneEntries(es []tarEntry) []tarEntry {
	out := make([]tarEntry, len(es))
	for i, e := range es {
		out[i] = tarEntry{e.name, bytes.Clone(e.body)}
	}
	return out
}

func writeTar(t *testing.T, es []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.body)), Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	return buf.Bytes()
}

// TestBackupRunningEdge: against a real edge (the --dev lab's, built by edge.New), backup goes
// through its control socket while it holds the database locks, and the client it just learned
// from the lab cloud is in the restored cache.
func TestBackupRunningEdge(t *testing.T) {
	l, server := startLabEdge(t)
	if out, err := runTestAuthCmd(t, "--server", server, "--secret", lab.Secret, "--mac", "02:00:00:00:00:01"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sock := filepath.Join(l.Dir, "control.sock")
	waitUntil(t, func() bool {
		st, err := control.Dial(sock).CacheStats(context.Background())
		return err == nil && st.Entries == 1
	})
	archive := filepath.Join(t.TempDir(), "lab.backup")
	out, err := runBackupCmd(t, "-f", archive, "--state-dir", l.Dir, "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(daemon)", "cache.db", "spool.db"} {
		if !strings.Contains(out, want) {
			t.Fatalf("backup lacks %q:\n%s", want, out)
		}
	}
	fresh := filepath.Join(t.TempDir(), "state")
	if _, err := runRestoreCmd(t, "-f", archive, "--state-dir", fresh, "--socket", filepath.Join(fresh, "none.sock")); err != nil {
		t.Fatal(err)
	}
	c := openStateCache(t, filepath.Join(fresh, "cache.db"))
	if r, ok, err := c.LookupMAC("02:00:00:00:00:01"); !ok || err != nil || vlanOf(r.Attrs) != "41" {
		t.Fatalf("restored cache: %+v %v %v", r, ok, err)
	}
}
