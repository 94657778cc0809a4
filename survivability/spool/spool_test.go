package spool

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero is defaults", Options{}, true},
		{"min bounds", Options{MaxRecords: 1, MaxBytes: MinMaxBytes, OpenTimeout: time.Millisecond}, true},
		{"max bounds", Options{MaxRecords: MaxRecordsLimit, MaxBytes: MaxMaxBytes, OpenTimeout: time.Minute}, true},
		{"negative records", Options{MaxRecords: -1}, false},
		{"too many records", Options{MaxRecords: MaxRecordsLimit + 1}, false},
		{"bytes too small", Options{MaxBytes: MinMaxBytes - 1}, false},
		{"bytes too large", Options{MaxBytes: MaxMaxBytes + 1}, false},
		{"negative bytes", Options{MaxBytes: -5}, false},
		{"open timeout too short", Options{OpenTimeout: time.Microsecond}, false},
		{"open timeout too long", Options{OpenTimeout: time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrBadOptions) {
				t.Fatalf("Validate = %v, want ErrBadOptions", err)
			}
		})
	}
	d := Options{}.withDefaults()
	if d.Path != DefaultPath || d.MaxRecords != 1_000_000 || d.MaxBytes != 512<<20 || d.OpenTimeout != time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "x.db"), MaxRecords: -1}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("Open with bad options = %v", err)
	}
}

// TestAppendOrderConcurrent: many goroutines append at once. Every seq is
// unique, the seqs are exactly 1..N (no gaps: a refused or failed append
// does not consume one), each goroutine sees its own seqs increase, each
// record is readable the moment Append returns, and Replay returns all of
// them in seq order with the packet appended under that seq.
func TestAppendOrderConcurrent(t *testing.T) {
	const workers, perWorker = 16, 40
	s := openTest(t, Options{})
	var mu sync.Mutex
	bySeq := map[uint64]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			<-start
			var last uint64
			for i := range perWorker {
				sess := fmt.Sprintf("w%02d-%03d", w, i)
				seq, err := s.Append(Entry{Client: "sw1", Src: "10.0.0.1:1645", Packet: acctRequest(byte(i), sess)})
				if err != nil {
					errs <- err
					return
				}
				if seq <= last {
					errs <- fmt.Errorf("worker %d: seq %d after %d", w, seq, last)
					return
				}
				last = seq
				// Acknowledged means committed: visible to a new read tx.
				if err := s.db.View(func(tx *bolt.Tx) error {
					if tx.Bucket(bucketRecords).Get(seqKey(seq)) == nil {
						return fmt.Errorf("seq %d not in the file after Append returned", seq)
					}
					return nil
				}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if _, dup := bySeq[seq]; dup {
					errs <- fmt.Errorf("seq %d given twice", seq)
				}
				bySeq[seq] = sess
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const n = workers * perWorker
	if len(bySeq) != n || s.Len() != n {
		t.Fatalf("%d seqs, Len %d, want %d", len(bySeq), s.Len(), n)
	}
	for seq := uint64(1); seq <= n; seq++ {
		if _, ok := bySeq[seq]; !ok {
			t.Fatalf("seq %d missing: seqs are not 1..%d", seq, n)
		}
	}
	got := drain(t, s, 8)
	if len(got) != n {
		t.Fatalf("replayed %d, want %d", len(got), n)
	}
	assertInOrder(t, got)
	for _, e := range got {
		if sess := sessionOf(t, e.Packet); sess != bySeq[e.Seq] {
			t.Fatalf("seq %d carries %s, was appended with %s", e.Seq, sess, bySeq[e.Seq])
		}
		if e.Client != "sw1" || e.Src != "10.0.0.1:1645" {
			t.Fatalf("seq %d: client %q src %q", e.Seq, e.Client, e.Src)
		}
	}
	st := s.Stats()
	if st.Appended != n || st.Replayed != n || st.Depth != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Fatalf("stats after drain: %+v", st)
	}
}

// TestGroupCommit holds the first commit until every other appender has
// queued behind it: the N appends must then take exactly two transactions
// (the leader alone, then everyone else in one group), and no Append may
// return before its own commit.
func TestGroupCommit(t *testing.T) {
	const n = 32
	s := openTest(t, Options{})
	var commits []int
	var cmu sync.Mutex
	queued := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.pending)
	}
	s.beforeCommit = func(batch int) {
		cmu.Lock()
		first := len(commits) == 0
		commits = append(commits, batch)
		cmu.Unlock()
		if !first {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for queued() < n-1 {
			if time.Now().After(deadline) {
				t.Errorf("only %d appenders queued behind the leader", queued())
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	for i := range n {
		wg.Go(func() {
			seq, err := s.Append(Entry{Client: "sw", Packet: acctRequest(byte(i), fmt.Sprint(i))})
			if err != nil {
				t.Errorf("Append: %v", err)
			}
			seqs[i] = seq
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Commits != 2 || st.Appended != n {
		t.Fatalf("commits %d (batches %v), appended %d: want 2 commits for %d appends", st.Commits, commits, st.Appended, n)
	}
	if len(commits) != 2 || commits[0] != 1 || commits[1] != n-1 {
		t.Fatalf("batches %v, want [1 %d]", commits, n-1)
	}
	seen := map[uint64]bool{}
	for _, q := range seqs {
		if q == 0 || q > n || seen[q] {
			t.Fatalf("seqs %v: not a permutation of 1..%d", seqs, n)
		}
		seen[q] = true
	}
}

// TestGroupCommitUnderLoad: without any hook, N concurrent appenders on a
// real disk (fsync on) share commits.
func TestGroupCommitUnderLoad(t *testing.T) {
	const n = 64
	s := openTest(t, Options{})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if _, err := s.Append(Entry{Packet: acctRequest(byte(i), fmt.Sprint(i))}); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	st := s.Stats()
	t.Logf("%d concurrent appends took %d commits", n, st.Commits)
	if st.Appended != n || st.Commits >= n {
		t.Fatalf("appended %d in %d commits: no group commit", st.Appended, st.Commits)
	}
}

// TestFull: beyond MaxRecords or MaxBytes Append refuses with ErrFull,
// counts and logs it (rate-limited), stores nothing, and loses nothing
// already stored; after a replay it takes records again.
func TestFull(t *testing.T) {
	t.Run("max records", func(t *testing.T) {
		clk := newFakeClock()
		var logs syncBuffer
		s := openTest(t, Options{MaxRecords: 10, Now: clk.Now, Logger: testLogger(&logs)})
		for i := range 10 {
			mustAppend(t, s, Entry{Client: "sw1", Packet: acctRequest(byte(i), fmt.Sprint(i))})
		}
		for i := range 3 {
			seq, err := s.Append(Entry{Client: "sw1", Packet: acctRequest(99, "over")})
			if !errors.Is(err, ErrFull) || seq != 0 {
				t.Fatalf("append %d beyond max = %d, %v; want ErrFull", i, seq, err)
			}
		}
		if n := strings.Count(logs.String(), "spool full"); n != 1 {
			t.Fatalf("%d spool-full lines within the rate limit, want 1:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "nas=sw1") {
			t.Fatalf("spool-full line is not an Error naming the NAS:\n%s", logs.String())
		}
		clk.Advance(fullLogEvery + time.Second)
		if _, err := s.Append(Entry{Client: "sw1", Packet: acctRequest(99, "over")}); !errors.Is(err, ErrFull) {
			t.Fatalf("append = %v", err)
		}
		if n := strings.Count(logs.String(), "spool full"); n != 2 {
			t.Fatalf("%d spool-full lines after the rate-limit window, want 2", n)
		}
		st := s.Stats()
		if st.FullRefusals != 4 || st.Depth != 10 || st.Appended != 10 || st.Commits != 10 {
			t.Fatalf("stats: %+v", st)
		}
		got := drain(t, s, 4)
		if len(got) != 10 {
			t.Fatalf("replayed %d, want the 10 stored", len(got))
		}
		for i, e := range got {
			if e.Seq != uint64(i+1) || sessionOf(t, e.Packet) != fmt.Sprint(i) {
				t.Fatalf("record %d: seq %d session %s", i, e.Seq, sessionOf(t, e.Packet))
			}
		}
		if seq := mustAppend(t, s, Entry{Packet: acctRequest(1, "after")}); seq != 11 {
			t.Fatalf("append after drain got seq %d, want 11 (refusals use no seq)", seq)
		}
	})
	t.Run("max bytes", func(t *testing.T) {
		s := openTest(t, Options{MaxBytes: MinMaxBytes})
		big := acctRequest(1, "big", vsa(3900))
		size := Entry{Packet: big}.encodedLen()
		want := int(MinMaxBytes / size)
		n := 0
		for ; n < want+5; n++ {
			if _, err := s.Append(Entry{Packet: big}); err != nil {
				if !errors.Is(err, ErrFull) {
					t.Fatalf("append %d: %v", n, err)
				}
				break
			}
		}
		if n != want {
			t.Fatalf("stored %d records of %d bytes under %d, want %d", n, size, int64(MinMaxBytes), want)
		}
		if s.Bytes() != int64(n)*size || s.Bytes() > MinMaxBytes {
			t.Fatalf("Bytes %d, want %d", s.Bytes(), int64(n)*size)
		}
		// A small record still fits in what is left.
		if small := (Entry{Packet: acctRequest(1, "s")}); MinMaxBytes-s.Bytes() >= small.encodedLen() {
			mustAppend(t, s, Entry{Packet: acctRequest(1, "s")})
		}
	})
}

// vsa returns Vendor-Specific attributes totalling about n octets, to make
// large packets.
func vsa(n int) []byte {
	var out []byte
	for n > 0 {
		l := min(n, 255)
		if l < 8 {
			break
		}
		a := []byte{26, byte(l), 0, 0, 0x39, 0xe7, 1, byte(l - 6)} // vendor 14823
		a = append(a, bytes.Repeat([]byte{'x'}, l-8)...)
		out = append(out, a...)
		n -= l
	}
	return out
}

func TestAppendBadEntry(t *testing.T) {
	good := acctRequest(1, "s")
	accessRequest := append([]byte(nil), good...)
	accessRequest[offCode] = 1
	badLen := append([]byte(nil), good...)
	badLen[offLength+1]++
	tests := []struct {
		name string
		e    Entry
	}{
		{"nil packet", Entry{}},
		{"short", Entry{Packet: good[:19]}},
		{"access-request", Entry{Packet: accessRequest}},
		{"length beyond data", Entry{Packet: badLen}},
		{"long client", Entry{Client: strings.Repeat("c", 256), Packet: good}},
		{"long src", Entry{Src: strings.Repeat("s", 256), Packet: good}},
		{"received beyond 2262", Entry{Received: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), Packet: good}},
	}
	s := openTest(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Append(tt.e); !errors.Is(err, ErrBadEntry) {
				t.Fatalf("Append = %v, want ErrBadEntry", err)
			}
		})
	}
	if s.Len() != 0 {
		t.Fatalf("bad entries stored: Len %d", s.Len())
	}
	// Padding beyond Length is accepted and not stored (RFC 2865 §3).
	padded := append(append([]byte(nil), good...), 0, 0, 0)
	mustAppend(t, s, Entry{Packet: padded})
	if got := drain(t, s, 1); len(got) != 1 || !bytes.Equal(got[0].Packet, good) {
		t.Fatalf("padded packet replayed as %x, want %x", got[0].Packet, good)
	}
}

// TestRestart: N records survive Close and reopen, replay in order, and
// sequence numbers continue after the highest ever assigned even once the
// spool has been emptied.
func TestRestart(t *testing.T) {
	const n = 300
	path := filepath.Join(t.TempDir(), "spool.db")
	clk := newFakeClock()
	s, err := Open(Options{Path: path, Now: clk.Now})
	must(t, err)
	for i := range n {
		mustAppend(t, s, Entry{Client: "sw", Packet: acctRequest(byte(i), fmt.Sprint(i))})
		clk.Advance(time.Second)
	}
	bytesBefore := s.Bytes()
	must(t, s.Close())
	must(t, s.Close()) // idempotent
	if _, err := s.Append(Entry{Packet: acctRequest(1, "x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	s = openTest(t, Options{Path: path, Now: clk.Now})
	if s.Len() != n || s.Bytes() != bytesBefore {
		t.Fatalf("after reopen Len %d Bytes %d, want %d %d", s.Len(), s.Bytes(), n, bytesBefore)
	}
	if st := s.Stats(); st.OldestAge != n*time.Second {
		t.Fatalf("oldest age %v, want %v", st.OldestAge, n*time.Second)
	}
	got := drain(t, s, 16)
	if len(got) != n {
		t.Fatalf("replayed %d after reopen, want %d", len(got), n)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || sessionOf(t, e.Packet) != fmt.Sprint(i) {
			t.Fatalf("record %d: seq %d session %s", i, e.Seq, sessionOf(t, e.Packet))
		}
	}
	must(t, s.Close())
	s = openTest(t, Options{Path: path})
	if seq := mustAppend(t, s, Entry{Packet: acctRequest(1, "next")}); seq != n+1 {
		t.Fatalf("first seq after an emptied spool reopened = %d, want %d", seq, n+1)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	openTest(t, Options{Path: path})
	if _, err := Open(Options{Path: path, OpenTimeout: 20 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestOpenUnknownSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(Options{Path: path})
	must(t, err)
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, []byte{0, 0, 0, 0, 0, 0, 0, 9})
	}))
	must(t, s.Close())
	if _, err := Open(Options{Path: path}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("Open of a newer schema = %v, want ErrUnknownVersion", err)
	}
}

// TestCloseWaitsForAppends: Close during a burst returns only after every
// Append in flight has its answer; each either succeeded (and is on disk)
// or got ErrClosed.
func TestCloseWaitsForAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(Options{Path: path})
	must(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []uint64
	for i := range 32 {
		wg.Go(func() {
			for j := range 20 {
				seq, err := s.Append(Entry{Packet: acctRequest(byte(j), fmt.Sprint(i, j))})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, seq)
				mu.Unlock()
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	must(t, s.Close())
	wg.Wait()
	s = openTest(t, Options{Path: path})
	if s.Len() != len(acked) {
		t.Fatalf("%d acknowledged, %d on disk", len(acked), s.Len())
	}
}
