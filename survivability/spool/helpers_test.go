package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// acctRequest builds an Accounting-Request (RFC 2866 §4.1) with
// Acct-Status-Type Interim-Update, User-Name, Acct-Session-Id = session and
// the extra raw attributes. The authenticator is a fixed pattern: the spool
// never checks it.
func acctRequest(id byte, session string, extra ...[]byte) []byte {
	p := make([]byte, headerLen, 128)
	p[offCode] = codeAccountingRequest
	p[1] = id
	for i := 4; i < headerLen; i++ {
		p[i] = byte(i)
	}
	p = append(p, 40, 6, 0, 0, 0, 3) // Acct-Status-Type = Interim-Update
	p = append(p, 1, byte(2+len("host/pc1")))
	p = append(p, "host/pc1"...)
	p = append(p, 44, byte(2+len(session)))
	p = append(p, session...)
	for _, a := range extra {
		p = append(p, a...)
	}
	binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)))
	return p
}

// delayAttr is a raw Acct-Delay-Time attribute.
func delayAttr(secs uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{attrAcctDelayTime, acctDelayAttrLen}, secs)
}

// sessionOf returns the Acct-Session-Id of a packet built by acctRequest.
func sessionOf(t testing.TB, p []byte) string {
	t.Helper()
	for off := headerLen; off+2 <= len(p); off += int(p[off+1]) {
		if p[off+1] < 2 {
			break
		}
		if p[off] == 44 {
			return string(p[off+2 : off+int(p[off+1])])
		}
	}
	t.Fatalf("no Acct-Session-Id in %x", p)
	return ""
}

// fakeClock is an injectable clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
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

// syncBuffer is a bytes.Buffer safe for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openTest opens a spool in a temp dir; o.Path is filled when empty. It is
// closed at cleanup.
func openTest(t testing.TB, o Options) *Spool {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "spool.db")
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spool, e Entry) uint64 {
	t.Helper()
	seq, err := s.Append(e)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// drain replays everything with a send that succeeds at once and returns
// the entries in the order send saw them.
func drain(t testing.TB, s *Spool, window int) []Entry {
	t.Helper()
	var mu sync.Mutex
	var got []Entry
	n, err := s.Replay(context.Background(), window, func(e Entry, _ time.Duration, done func(error)) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		done(nil)
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if n != len(got) {
		t.Fatalf("Replay reported %d, send saw %d", n, len(got))
	}
	return got
}

// assertInOrder fails unless entries have strictly increasing seqs.
func assertInOrder(t testing.TB, es []Entry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].Seq <= es[i-1].Seq {
			t.Fatalf("out of order at %d: seq %d after %d", i, es[i].Seq, es[i-1].Seq)
		}
	}
}
