package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// attrClass carries a test record's index within its session (RFC 2865
// §5.25 Class: opaque to the spool).
const attrClass = 25

// sessionRecord builds an Accounting-Request of session whose Class is
// "idx" (or "P<idx>" for a record the test upstream never accepts).
func sessionRecord(session string, idx int, poison bool) []byte {
	c := strconv.Itoa(idx)
	if poison {
		c = "P" + c
	}
	return acctRequest(byte(idx), session, append([]byte{attrClass, byte(2 + len(c))}, c...))
}

// attrOf returns the value of the first attribute typ of a packet built by
// acctRequest, or "".
func attrOf(p []byte, typ byte) string {
	for off := headerLen; off+2 <= len(p) && p[off+1] >= 2 && off+int(p[off+1]) <= len(p); off += int(p[off+1]) {
		if p[off] == typ {
			return string(p[off+2 : off+int(p[off+1])])
		}
	}
	return ""
}

func sessionKey(e Entry) string { return attrOf(e.Packet, 44) }

// TestReplayKeyedOrder: with a Key, records of one key are sent one at a
// time in seq order, each only once the previous one is deleted from the
// file, while different keys are replayed in parallel up to the window.
func TestReplayKeyedOrder(t *testing.T) {
	const sessions, perSession, window = 20, 15, 8
	s := openTest(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	next := make([]int, sessions)
	for range sessions * perSession {
		i := rng.IntN(sessions)
		for next[i] >= perSession {
			i = (i + 1) % sessions
		}
		mustAppend(t, s, Entry{Packet: sessionRecord(fmt.Sprint("s", i), next[i], false)})
		next[i]++
	}
	var (
		mu          sync.Mutex
		last        = map[string]uint64{} // seq last sent per session
		busy        = map[string]bool{}
		outstanding atomic.Int64
		peak        atomic.Int64
		wg          sync.WaitGroup
		failure     string
	)
	fail := func(f string, a ...any) {
		mu.Lock()
		if failure == "" {
			failure = fmt.Sprintf(f, a...)
		}
		mu.Unlock()
	}
	n, err := s.ReplayWith(context.Background(), ReplayOptions{Window: window, Key: sessionKey,
		Send: func(e Entry, _ time.Duration, done func(error)) {
			k := sessionKey(e)
			mu.Lock()
			if busy[k] {
				fail("session %s: seq %d sent while an earlier record is outstanding", k, e.Seq)
			}
			if e.Seq <= last[k] {
				fail("session %s: seq %d sent after seq %d", k, e.Seq, last[k])
			}
			prev := last[k]
			busy[k], last[k] = true, e.Seq
			mu.Unlock()
			if prev != 0 {
				err := s.db.View(func(tx *bolt.Tx) error {
					if tx.Bucket(bucketRecords).Get(seqKey(prev)) != nil {
						return fmt.Errorf("session %s: seq %d sent before seq %d was deleted", k, e.Seq, prev)
					}
					return nil
				})
				if err != nil {
					fail("%v", err)
				}
			}
			cur := outstanding.Add(1)
			for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
			}
			d := time.Duration(rng.IntN(200)) * time.Microsecond
			wg.Go(func() {
				time.Sleep(d)
				mu.Lock()
				busy[k] = false
				mu.Unlock()
				outstanding.Add(-1)
				done(nil)
			})
		}})
	wg.Wait()
	if failure != "" {
		t.Fatal(failure)
	}
	if err != nil || n != sessions*perSession {
		t.Fatalf("ReplayWith = %d, %v; want %d, nil", n, err, sessions*perSession)
	}
	if p := peak.Load(); p < 2 || p > window {
		t.Fatalf("peak outstanding %d: want parallel sessions, at most the window %d", p, window)
	}
	t.Logf("%d records of %d sessions, peak %d outstanding (window %d)", n, sessions, peak.Load(), window)
}

// TestReplayOneSessionBacklog: one key with a backlog far longer than the
// records Replay holds in memory still goes out whole and in order, and the
// key behind it follows.
func TestReplayOneSessionBacklog(t *testing.T) {
	s := openTest(t, Options{})
	const long = 2000
	for i := range long {
		mustAppend(t, s, Entry{Packet: sessionRecord("long", i, false)})
	}
	mustAppend(t, s, Entry{Packet: sessionRecord("other", 0, false)})
	var order []string
	n, err := s.ReplayWith(context.Background(), ReplayOptions{Window: 4, Key: sessionKey,
		Send: func(e Entry, _ time.Duration, done func(error)) {
			order = append(order, sessionKey(e)+"/"+attrOf(e.Packet, attrClass))
			done(nil)
		}})
	if err != nil || n != long+1 || len(order) != long+1 {
		t.Fatalf("ReplayWith = %d, %v; sent %d", n, err, len(order))
	}
	idx := 0
	for _, o := range order {
		if strings.HasPrefix(o, "long/") {
			if o != "long/"+strconv.Itoa(idx) {
				t.Fatalf("long session out of order: %s at position %d", o, idx)
			}
			idx++
		}
	}
}

// TestReplayPermanent: a record failing with ErrPermanent is quarantined
// with its reason, kept on disk across a reopen, counted, logged, and the
// session's next record goes on.
func TestReplayPermanent(t *testing.T) {
	var logs syncBuffer
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(Options{Path: path, Logger: testLogger(&logs)})
	must(t, err)
	mustAppend(t, s, Entry{Client: "sw", Packet: sessionRecord("a", 0, false)})
	mustAppend(t, s, Entry{Client: "sw", Packet: sessionRecord("a", 1, true)})
	mustAppend(t, s, Entry{Client: "sw", Packet: sessionRecord("a", 2, false)})
	var got []string
	n, err := s.ReplayWith(context.Background(), ReplayOptions{Window: 4, Key: sessionKey,
		Send: func(e Entry, _ time.Duration, done func(error)) {
			c := attrOf(e.Packet, attrClass)
			got = append(got, c)
			if strings.HasPrefix(c, "P") {
				done(fmt.Errorf("%w: 4090 octets after forwarding", ErrPermanent))
				return
			}
			done(nil)
		}})
	if err != nil || n != 2 {
		t.Fatalf("ReplayWith = %d, %v; want 2 delivered, nil", n, err)
	}
	if strings.Join(got, ",") != "0,P1,2" {
		t.Fatalf("sent %v", got)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.QuarantineDepth != 1 || st.Depth != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "spool record quarantined") || !strings.Contains(logs.String(), "4090 octets") {
		t.Fatalf("quarantine not logged with its reason:\n%s", logs.String())
	}
	must(t, s.Close())
	s, err = Open(Options{Path: path})
	must(t, err)
	defer s.Close()
	if st := s.Stats(); st.QuarantineDepth != 1 || st.Depth != 0 {
		t.Fatalf("after reopen: stats %+v", st)
	}
	q, err := s.Quarantine(10)
	must(t, err)
	if len(q) != 1 || q[0].Seq != 2 || q[0].Client != "sw" || !strings.Contains(q[0].Reason, "4090 octets") {
		t.Fatalf("Quarantine() = %+v", q)
	}
	if n, err := s.Replay(context.Background(), 1, func(Entry, time.Duration, func(error)) { t.Fatal("quarantined record sent again") }); n != 0 || err != nil {
		t.Fatalf("Replay after reopen = %d, %v", n, err)
	}
}

// TestReplayDoneRaces: done called twice, concurrently, with different
// outcomes settles each record once; nothing panics.
func TestReplayDoneRaces(t *testing.T) {
	s := openTest(t, Options{})
	fill(t, s, 200)
	var wg sync.WaitGroup
	n, err := s.ReplayWith(context.Background(), ReplayOptions{Window: 16, Key: sessionKey,
		Send: func(e Entry, _ time.Duration, done func(error)) {
			wg.Go(func() { done(nil) })
			wg.Go(func() { done(nil) })
			wg.Go(func() { done(nil) })
		}})
	wg.Wait()
	if err != nil || n != 200 || s.Len() != 0 || s.Stats().Replayed != 200 {
		t.Fatalf("ReplayWith = %d, %v; Len %d, stats %+v", n, err, s.Len(), s.Stats())
	}
}

// TestSpoolModel is a model test: seeded random sequences of appends
// (records of 12 sessions, some the upstream never accepts), replays whose
// sends succeed, fail before or after the upstream got the record, and
// crashes (the replay is abandoned with every outstanding record
// unanswered and the file is reopened) at random points. The upstream must
// see every record but the poison ones, each session's records in append
// order even counting duplicates, and duplicates only of records that were
// delivered but unanswered at a failure or crash.
func TestSpoolModel(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 77))
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(Options{Path: path})
	must(t, err)
	defer func() { _ = s.Close() }()

	const sessions = 12
	var (
		mu        sync.Mutex
		appended  = make([]int, sessions) // next index per session
		poison    = map[string]bool{}     // "s/i" never accepted
		delivered = map[string][]int{}    // per session, the upstream's view
		seenOnce  = map[string]bool{}
		unacked   int // delivered, then failed or crashed: may be replayed
		dups      int
	)
	appendSome := func(k int) {
		for range k {
			i := rng.IntN(sessions)
			p := rng.IntN(40) == 0
			mustAppend(t, s, Entry{Packet: sessionRecord(fmt.Sprint(i), appended[i], p)})
			if p {
				poison[fmt.Sprintf("%d/%d", i, appended[i])] = true
			}
			appended[i]++
		}
	}
	deliver := func(e Entry) {
		k := sessionKey(e)
		idx, _ := strconv.Atoi(attrOf(e.Packet, attrClass))
		mu.Lock()
		defer mu.Unlock()
		if d := delivered[k]; len(d) > 0 && idx < d[len(d)-1] {
			t.Errorf("seed %d: session %s got record %d after %d", seed, k, idx, d[len(d)-1])
		}
		delivered[k] = append(delivered[k], idx)
		id := k + "/" + strconv.Itoa(idx)
		if seenOnce[id] {
			dups++
		}
		seenOnce[id] = true
	}
	errTransient := errors.New("upstream timeout")
	for step := 0; step < 40; step++ {
		switch op := rng.IntN(6); {
		case op < 2:
			appendSome(1 + rng.IntN(30))
		default:
			// failAfter: sends after which the run fails (or crashes).
			failAfter := rng.IntN(60)
			crash := op == 5
			ctx, cancel := context.WithCancel(context.Background())
			var (
				sent int
				wg   sync.WaitGroup
				live = rng.IntN(3) == 0
			)
			window := 1 + rng.IntN(8)
			_, rerr := s.ReplayWith(ctx, ReplayOptions{Window: window, Key: sessionKey,
				Send: func(e Entry, _ time.Duration, done func(error)) {
					sent++
					c := attrOf(e.Packet, attrClass)
					if live && rng.IntN(4) == 0 {
						appendSome(1) // live accounting queued behind the backlog
					}
					if strings.HasPrefix(c, "P") {
						done(fmt.Errorf("%w: never accepted", ErrPermanent))
						return
					}
					if sent > failAfter {
						// Failure or crash: the upstream may or may not have
						// the record; either way no answer.
						if rng.IntN(2) == 0 {
							deliver(e)
							mu.Lock()
							unacked++
							mu.Unlock()
						}
						if crash {
							cancel()
						}
						done(errTransient)
						return
					}
					deliver(e)
					// Answer now or later, in random order.
					if rng.IntN(2) == 0 {
						done(nil)
						return
					}
					d := time.Duration(rng.IntN(300)) * time.Microsecond
					wg.Go(func() {
						time.Sleep(d)
						done(nil)
					})
				}})
			wg.Wait()
			cancel()
			if rerr != nil && !errors.Is(rerr, errTransient) && !errors.Is(rerr, context.Canceled) {
				t.Fatalf("seed %d step %d: replay: %v", seed, step, rerr)
			}
			if crash {
				// Everything not deleted is what a crash leaves on disk.
				must(t, s.Close())
				if s, err = Open(Options{Path: path}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Recovery: drain with an upstream that always answers.
	for range 3 {
		if _, err := s.ReplayWith(context.Background(), ReplayOptions{Window: 8, Key: sessionKey,
			Send: func(e Entry, _ time.Duration, done func(error)) {
				if strings.HasPrefix(attrOf(e.Packet, attrClass), "P") {
					done(ErrPermanent)
					return
				}
				deliver(e)
				done(nil)
			}}); err != nil {
			t.Fatalf("seed %d: final replay: %v", seed, err)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("seed %d: %d records left", seed, s.Len())
	}
	total, lost := 0, 0
	for i := range sessions {
		k := fmt.Sprint(i)
		for j := range appended[i] {
			id := k + "/" + strconv.Itoa(j)
			if poison[id] {
				continue
			}
			total++
			if !seenOnce[id] {
				lost++
			}
		}
	}
	if lost != 0 {
		t.Fatalf("seed %d: %d of %d records never delivered", seed, lost, total)
	}
	if dups > unacked {
		t.Fatalf("seed %d: %d duplicates, but only %d records were delivered and left unanswered", seed, dups, unacked)
	}
	if st := s.Stats(); st.QuarantineDepth != len(poison) {
		t.Fatalf("seed %d: %d quarantined on disk, %d poison records appended", seed, st.QuarantineDepth, len(poison))
	}
	t.Logf("seed %d: %d records, %d poison quarantined, %d duplicates (bound %d), 0 lost, 0 reordered", seed, total, len(poison), dups, unacked)
}
