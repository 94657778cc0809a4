package events

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
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

// TestEventJSON: the wire form of `mxedge events --json` and the control socket: snake_case keys,
// empty fields left out, and a round trip that keeps every field.
func TestEventJSON(t *testing.T) {
	ev := Event{Time: t0, Method: "eap-tls", MAC: "02:00:00:00:00:0a", Identity: "dave", NAS: "wlc-2", Reason: "cert-expired",
		Source: SourceLocal, Type: "NAC Client Certificate Expired", CertSerial: "01c4", CertCN: "dave",
		CertIssuer: "CN=Org Root CA", CertNotAfter: t0.AddDate(0, 0, -1)}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-22T12:00:00Z","allowed":false,"method":"eap-tls","mac":"02:00:00:00:00:0a","identity":"dave","nas":"wlc-2",` +
		`"reason":"cert-expired","source":"local","type":"NAC Client Certificate Expired","cert_serial":"01c4","cert_cn":"dave",` +
		`"cert_issuer":"CN=Org Root CA","cert_not_after":"2026-11-21T12:00:00Z"}`
	if string(b) != want {
		t.Errorf("json\n got %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back != ev {
		t.Errorf("round trip %+v (%v), want %+v", back, err, ev)
	}
	b, _ = json.Marshal(Event{Time: t0, Method: "accounting", Source: SourceLocal, Reason: "spooled"})
	if strings.Contains(string(b), "type") || strings.Contains(string(b), "cert_") {
		t.Errorf("accounting event %s: want no type and no certificate fields", b)
	}
}
