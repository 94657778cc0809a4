package mgmt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink the Syncer goroutine writes while the test reads.
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

func testLogger(tb testing.TB) (*slog.Logger, *lockedBuffer) {
	tb.Helper()
	buf := &lockedBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// fakeClock is the Syncer's clock: Now is advanced by the test, After hands the requested delay
// to the test, which fires it after advancing Now. No test sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	delays chan delayReq
}

type delayReq struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock(start time.Time) *fakeClock {
	return &fakeClock{now: start, delays: make(chan delayReq)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.delays <- delayReq{d, ch}
	return ch
}

// next waits for the loop to ask for its next delay, advances the clock by it and fires it.
func (c *fakeClock) next(tb testing.TB) time.Duration {
	tb.Helper()
	select {
	case r := <-c.delays:
		c.Advance(r.d)
		r.fire <- c.Now()
		return r.d
	case <-time.After(30 * time.Second):
		tb.Fatal("sync loop did not ask for its next delay within 30s")
		return 0
	}
}

// dirState is the content, mode and name of every file under dir: "nothing half-written" means
// it is equal before and after a failed register.
func dirState(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel] = "dir " + fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = fi.Mode().String() + " " + hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// closedURL is an https URL on loopback where nothing listens.
func closedURL(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}
