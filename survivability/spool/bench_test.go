package spool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchPacket is an Interim-Update of a realistic size (~230 octets: the
// usual counters, station ids, NAS identity and a few VSAs).
var benchPacket = acctRequest(1, "0000A1B2-00000042", delayAttr(0), vsa(180))

// benchAppend measures appends/s with the given number of concurrent
// appenders on the test's temp dir (fsync on: this disk's figure). The
// benchmark loop is one of the appenders, so ns/op is one caller's Append
// latency under that load; appends-s counts every appender's records.
func benchAppend(b *testing.B, appenders int) {
	s := openTest(b, Options{MaxRecords: MaxRecordsLimit, MaxBytes: MaxMaxBytes})
	e := Entry{Client: "sw", Src: "10.0.0.1:1645", Packet: benchPacket}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range appenders - 1 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := s.Append(e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := s.Append(e); err != nil {
			b.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(st.Appended)/el.Seconds(), "appends/s")
	b.ReportMetric(float64(st.Appended)/float64(max(st.Commits, 1)), "appends/commit")
}

// BenchmarkAppend64: 64 concurrent appenders, group commit.
func BenchmarkAppend64(b *testing.B) { benchAppend(b, 64) }

// BenchmarkAppend1: one appender, one fsync per record: the anchor the
// group commit is compared with.
func BenchmarkAppend1(b *testing.B) { benchAppend(b, 1) }

// BenchmarkReplay64: replay with window 64 and an upstream that answers at
// once; the delete transactions bound it.
func BenchmarkReplay64(b *testing.B) {
	s := openTest(b, Options{MaxRecords: MaxRecordsLimit, MaxBytes: MaxMaxBytes})
	const batch = 4096
	b.ReportAllocs()
	total := 0
	var el time.Duration
	for b.Loop() {
		b.StopTimer()
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range batch / 64 {
					if _, err := s.Append(Entry{Packet: benchPacket}); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		b.StartTimer()
		t0 := time.Now()
		n, err := s.Replay(context.Background(), 64, func(_ Entry, _ time.Duration, done func(error)) { done(nil) })
		el += time.Since(t0)
		if err != nil || n != batch {
			b.Fatalf("Replay = %d, %v", n, err)
		}
		total += n
	}
	b.ReportMetric(float64(total)/el.Seconds(), "records/s")
}

func BenchmarkAddDelay(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AddDelay(benchPacket, 95*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupCommitRatio alternates short rounds of 64 concurrent
// appenders (256 appends) and of one appender (8 appends) on the same file,
// so both see the same disk load, and reports their rates and the ratio
// measured in this one run: what group commit buys on this disk.
func BenchmarkGroupCommitRatio(b *testing.B) {
	s := openTest(b, Options{MaxRecords: MaxRecordsLimit, MaxBytes: MaxMaxBytes})
	appendN := func(n int) {
		if _, err := s.Append(Entry{Client: "sw", Src: "10.0.0.1:1645", Packet: benchPacket}); err != nil {
			b.Fatal(err)
		}
		for range n - 1 {
			if _, err := s.Append(Entry{Client: "sw", Src: "10.0.0.1:1645", Packet: benchPacket}); err != nil {
				b.Error(err)
				return
			}
		}
	}
	var group, serial time.Duration
	var groupN, serialN int
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() { appendN(4) })
		}
		wg.Wait()
		group += time.Since(t0)
		groupN += 256
		t0 = time.Now()
		appendN(8)
		serial += time.Since(t0)
		serialN += 8
	}
	g, s1 := float64(groupN)/group.Seconds(), float64(serialN)/serial.Seconds()
	b.ReportMetric(g, "group-appends/s")
	b.ReportMetric(s1, "serial-appends/s")
	b.ReportMetric(g/s1, "ratio")
}

// BenchmarkReplayKeyedRatio replays, in alternating rounds on one file,
// 1024 sessions of Start, Interim-Update and Stop (the three rounds of
// records one after another, as an outage spools them) with window 64,
// once with the session as Key and once without, and reports both rates
// and keyed ÷ unkeyed: what per-session order costs when an upstream
// answers at once.
func BenchmarkReplayKeyedRatio(b *testing.B) {
	s := openTest(b, Options{MaxRecords: MaxRecordsLimit, MaxBytes: MaxMaxBytes})
	const sessions = 1024
	fillRound := func() {
		for k := range 3 {
			for i := range sessions {
				if _, err := s.Append(Entry{Packet: sessionRecord(fmt.Sprint("s", i), k, false)}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	var el [2]time.Duration
	var total [2]int
	b.ReportAllocs()
	for b.Loop() {
		for keyed := range 2 {
			b.StopTimer()
			fillRound()
			b.StartTimer()
			o := ReplayOptions{Window: 64, Send: func(_ Entry, _ time.Duration, done func(error)) { done(nil) }}
			if keyed == 1 {
				o.Key = sessionKey
			}
			t0 := time.Now()
			n, err := s.ReplayWith(context.Background(), o)
			el[keyed] += time.Since(t0)
			if err != nil || n != 3*sessions {
				b.Fatalf("ReplayWith = %d, %v", n, err)
			}
			total[keyed] += n
		}
	}
	unkeyed, keyed := float64(total[0])/el[0].Seconds(), float64(total[1])/el[1].Seconds()
	b.ReportMetric(unkeyed, "unkeyed-records/s")
	b.ReportMetric(keyed, "keyed-records/s")
	b.ReportMetric(keyed/unkeyed, "keyed/unkeyed")
}
