package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fill appends n records whose Acct-Session-Id is their index and returns
// their seqs.
func fill(t testing.TB, s *Spool, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		seqs[i] = mustAppend(t, s, Entry{Client: "sw", Packet: acctRequest(byte(i), fmt.Sprint(i))})
	}
	return seqs
}

// TestReplayWindow: send is asynchronous with random latency; records are
// sent in seq order, never more than window outstanding, and each is
// deleted exactly once.
func TestReplayWindow(t *testing.T) {
	for _, window := range []int{1, 4, 32} {
		t.Run(fmt.Sprint("window ", window), func(t *testing.T) {
			const n = 200
			s := openTest(t, Options{})
			fill(t, s, n)
			var (
				mu          sync.Mutex
				order       []uint64
				outstanding atomic.Int64
				peak        atomic.Int64
				wg          sync.WaitGroup
			)
			replayed, err := s.Replay(context.Background(), window, func(e Entry, _ time.Duration, done func(error)) {
				mu.Lock()
				order = append(order, e.Seq)
				mu.Unlock()
				cur := outstanding.Add(1)
				for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
				}
				d := time.Duration(rand.IntN(300)) * time.Microsecond
				wg.Go(func() {
					time.Sleep(d)
					outstanding.Add(-1)
					done(nil)
				})
			})
			wg.Wait()
			if err != nil || replayed != n {
				t.Fatalf("Replay = %d, %v; want %d, nil", replayed, err, n)
			}
			if len(order) != n {
				t.Fatalf("sent %d, want %d", len(order), n)
			}
			for i, q := range order {
				if q != uint64(i+1) {
					t.Fatalf("send %d was seq %d: not in order", i, q)
				}
			}
			if p := peak.Load(); p > int64(window) {
				t.Fatalf("%d outstanding at once, window %d", p, window)
			}
			if s.Len() != 0 || s.Stats().Replayed != n {
				t.Fatalf("after replay Len %d, stats %+v", s.Len(), s.Stats())
			}
		})
	}
}

// TestReplayFailureResumes: a failed send stops the replay; the next
// Replay starts at the failed record. Over both calls every record reaches
// the upstream, none succeeds twice, and with window 1 the upstream sees
// strict seq order; with a larger window a record can only be overtaken by
// records that were in flight with it (at most window-1).
func TestReplayFailureResumes(t *testing.T) {
	for _, window := range []int{1, 4} {
		t.Run(fmt.Sprint("window ", window), func(t *testing.T) {
			const n, failAt = 30, 7
			s := openTest(t, Options{})
			fill(t, s, n)
			var upstream []uint64 // successful deliveries, in order
			errUpstream := errors.New("upstream timeout")
			failed := false
			send := func(e Entry, _ time.Duration, done func(error)) {
				if e.Seq == failAt && !failed {
					failed = true
					done(errUpstream)
					return
				}
				upstream = append(upstream, e.Seq)
				done(nil)
			}
			r1, err := s.Replay(context.Background(), window, send)
			if !errors.Is(err, errUpstream) {
				t.Fatalf("first Replay err = %v, want the send error", err)
			}
			if r1 != len(upstream) || s.Len() != n-r1 {
				t.Fatalf("first Replay replayed %d, upstream got %d, Len %d", r1, len(upstream), s.Len())
			}
			if r1 < failAt-1 || r1 > failAt-1+window-1 {
				t.Fatalf("first Replay replayed %d: want the %d before the failure and at most %d in flight with it", r1, failAt-1, window-1)
			}
			before := len(upstream)
			r2, err := s.Replay(context.Background(), window, send)
			if err != nil || r1+r2 != n {
				t.Fatalf("second Replay = %d, %v (first %d); want all %d", r2, err, r1, n)
			}
			if upstream[before] != failAt {
				t.Fatalf("second Replay started at seq %d, want the failed %d", upstream[before], failAt)
			}
			seen := map[uint64]bool{}
			for i, q := range upstream {
				if seen[q] {
					t.Fatalf("seq %d delivered twice", q)
				}
				seen[q] = true
				if window == 1 && q != uint64(i+1) {
					t.Fatalf("window 1: delivery %d is seq %d", i, q)
				}
				if int(q) < i+1-(window-1) {
					t.Fatalf("seq %d delivered at position %d: overtaken by more than window-1", q, i)
				}
			}
			if len(seen) != n {
				t.Fatalf("%d distinct records delivered, want %d", len(seen), n)
			}
		})
	}
}

// TestReplayDelay: the delay is Now - Received on the injected clock, both
// for Received stamped by Append and given by the caller.
func TestReplayDelay(t *testing.T) {
	clk := newFakeClock()
	s := openTest(t, Options{Now: clk.Now})
	t0 := clk.Now()
	mustAppend(t, s, Entry{Packet: acctRequest(1, "a")}) // stamped t0
	mustAppend(t, s, Entry{Packet: acctRequest(2, "b"), Received: t0.Add(-30 * time.Second)})
	mustAppend(t, s, Entry{Packet: acctRequest(3, "c"), Received: t0.Add(time.Hour)}) // clock stepped back
	clk.Advance(90*time.Second + 500*time.Millisecond)
	var delays []time.Duration
	var received []time.Time
	_, err := s.Replay(context.Background(), 1, func(e Entry, d time.Duration, done func(error)) {
		delays = append(delays, d)
		received = append(received, e.Received)
		done(nil)
	})
	must(t, err)
	want := []time.Duration{90*time.Second + 500*time.Millisecond, 120*time.Second + 500*time.Millisecond, 0}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delay %d = %v, want %v", i, delays[i], want[i])
		}
	}
	if !received[0].Equal(t0) {
		t.Fatalf("Append stamped %v, want %v", received[0], t0)
	}
}

// TestReplayCancel: cancelling ctx stops new sends, waits for the
// outstanding ones (deleting those that succeeded) and returns ctx.Err().
func TestReplayCancel(t *testing.T) {
	s := openTest(t, Options{})
	fill(t, s, 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	sent := 0
	replayed, err := s.Replay(ctx, 4, func(e Entry, _ time.Duration, done func(error)) {
		sent++
		if e.Seq == 10 {
			cancel()
		}
		wg.Go(func() {
			time.Sleep(2 * time.Millisecond) // answered after the cancel
			done(nil)
		})
	})
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Replay err = %v, want context.Canceled", err)
	}
	if replayed != sent || s.Len() != 50-sent {
		t.Fatalf("sent %d, replayed %d, Len %d: outstanding successes must be deleted", sent, replayed, s.Len())
	}
	if sent < 10 || sent > 10+3 {
		t.Fatalf("sent %d after a cancel at seq 10 with window 4", sent)
	}
	if got := drain(t, s, 4); len(got) != 50-sent || got[0].Seq != uint64(sent+1) {
		t.Fatalf("resume after cancel: %d records from seq %d", len(got), got[0].Seq)
	}
}

// TestReplayOneAtATime: a second Replay while one runs is refused, and a
// second done call is ignored.
func TestReplayOneAtATime(t *testing.T) {
	s := openTest(t, Options{})
	fill(t, s, 3)
	var inner error
	n, err := s.Replay(context.Background(), 2, func(e Entry, _ time.Duration, done func(error)) {
		if e.Seq == 1 {
			_, inner = s.Replay(context.Background(), 1, func(Entry, time.Duration, func(error)) {})
		}
		done(nil)
		done(errors.New("late second call")) // ignored
	})
	if err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	if !errors.Is(inner, ErrReplayRunning) {
		t.Fatalf("nested Replay = %v, want ErrReplayRunning", inner)
	}
}

func TestReplayArguments(t *testing.T) {
	s := openTest(t, Options{})
	nop := func(_ Entry, _ time.Duration, done func(error)) { done(nil) }
	for _, w := range []int{0, -1, MaxWindow + 1} {
		if _, err := s.Replay(context.Background(), w, nop); !errors.Is(err, ErrBadWindow) {
			t.Fatalf("window %d: %v, want ErrBadWindow", w, err)
		}
	}
	if _, err := s.Replay(context.Background(), 1, nil); err == nil {
		t.Fatal("nil send accepted")
	}
	if n, err := s.Replay(context.Background(), 1, nop); n != 0 || err != nil {
		t.Fatalf("Replay of an empty spool = %d, %v", n, err)
	}
	must(t, s.Close())
	if _, err := s.Replay(context.Background(), 1, nop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close = %v, want ErrClosed", err)
	}
}

// TestReplayDrainsLiveAppends: records appended while Replay runs are
// replayed by the same call, after the older ones.
func TestReplayDrainsLiveAppends(t *testing.T) {
	s := openTest(t, Options{})
	fill(t, s, 5)
	var got []uint64
	_, err := s.Replay(context.Background(), 2, func(e Entry, _ time.Duration, done func(error)) {
		got = append(got, e.Seq)
		if e.Seq <= 3 {
			mustAppend(t, s, Entry{Packet: acctRequest(9, "live")})
		}
		done(nil)
	})
	must(t, err)
	if len(got) != 8 {
		t.Fatalf("replayed %v, want seqs 1..8", got)
	}
	for i, q := range got {
		if q != uint64(i+1) {
			t.Fatalf("replayed %v, want seqs 1..8 in order", got)
		}
	}
}

// TestReplayQuarantine: a record that does not decode is moved aside,
// logged and counted, and the replay goes on with the next one.
func TestReplayQuarantine(t *testing.T) {
	var logs syncBuffer
	s := openTest(t, Options{Logger: testLogger(&logs)})
	fill(t, s, 4)
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(seqKey(2), []byte{codecV1, 1, 2, 3})
	}))
	got := drain(t, s, 2)
	if len(got) != 3 || got[0].Seq != 1 || got[1].Seq != 3 || got[2].Seq != 4 {
		t.Fatalf("replayed %v", got)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.Depth != 0 {
		t.Fatalf("stats %+v", st)
	}
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketQuarantine).Get(seqKey(2)) == nil {
			return errors.New("bad record not in the quarantine bucket")
		}
		return nil
	}))
	if !strings.Contains(logs.String(), "spool record quarantined") {
		t.Fatalf("no quarantine log:\n%s", logs.String())
	}
}
