package events

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestRecent(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		published int
		n         int
		want      []string // identities, oldest first
	}{
		{"empty", 3, 0, 0, []string{}},
		{"partial all", 3, 2, 0, []string{"u0", "u1"}},
		{"partial last", 3, 2, 1, []string{"u1"}},
		{"wrapped all", 3, 5, 0, []string{"u2", "u3", "u4"}},
		{"wrapped last two", 3, 5, 2, []string{"u3", "u4"}},
		{"more than kept", 3, 5, 10, []string{"u2", "u3", "u4"}},
		{"exactly full", 3, 3, 0, []string{"u0", "u1", "u2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options{Size: tc.size, Now: func() time.Time { return t0 }})
			for i := range tc.published {
				b.Publish(Event{Identity: fmt.Sprintf("u%d", i)})
			}
			got := b.Recent(tc.n)
			if len(got) != len(tc.want) {
				t.Fatalf("Recent(%d) = %d events, want %d", tc.n, len(got), len(tc.want))
			}
			for i, ev := range got {
				if ev.Identity != tc.want[i] || !ev.Time.Equal(t0) {
					t.Errorf("event %d = %q at %v, want %q at %v", i, ev.Identity, ev.Time, tc.want[i], t0)
				}
			}
		})
	}
}

func TestSubscribe(t *testing.T) {
	base := runtime.NumGoroutine()
	b := New(Options{Buffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	ch := b.Subscribe(ctx)
	if b.Subscribers() != 1 {
		t.Fatalf("subscribers = %d", b.Subscribers())
	}
	// The subscriber does not read: the third and fourth events are dropped, Publish never blocks.
	for i := range 4 {
		b.Publish(Event{Identity: fmt.Sprint(i), Allowed: true})
	}
	if b.Dropped() != 2 || b.Published() != 4 {
		t.Fatalf("dropped %d published %d, want 2 and 4", b.Dropped(), b.Published())
	}
	for _, want := range []string{"0", "1"} {
		if ev := <-ch; ev.Identity != want {
			t.Fatalf("got %q, want %q", ev.Identity, want)
		}
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed after cancel")
	}
	if b.Subscribers() != 0 {
		t.Fatalf("subscribers after cancel = %d", b.Subscribers())
	}
	b.Publish(Event{}) // no subscriber: no panic on the closed channel
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("goroutines %d > baseline %d", n, base)
	}
}

func TestConcurrentPublish(t *testing.T) {
	b := New(Options{Size: 50, Buffer: 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Subscribe(ctx)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	const writers, each = 4, 500
	fin := make(chan struct{})
	for w := range writers {
		go func() {
			for i := range each {
				b.Publish(Event{Identity: fmt.Sprint(w, i)})
			}
			fin <- struct{}{}
		}()
	}
	for range writers {
		<-fin
	}
	cancel()
	got := <-done
	if uint64(got)+b.Dropped() != writers*each {
		t.Fatalf("received %d + dropped %d != %d", got, b.Dropped(), writers*each)
	}
	if len(b.Recent(0)) != 50 {
		t.Fatalf("ring holds %d", len(b.Recent(0)))
	}
}

func BenchmarkPublish(b *testing.B) {
	bus := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := bus.Subscribe(ctx)
	go func() {
		for range ch {
		}
	}()
	ev := Event{Allowed: true, Method: "mab", MAC: "02:00:00:00:00:01", NAS: "sw1", Source: SourceUpstream}
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish(ev)
	}
}
