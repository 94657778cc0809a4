package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"testing"
	"time"

	"mxedge/edge/events"
)

func TestEvents(t *testing.T) {
	bus := events.New(events.Options{Size: 5})
	for i := range 7 {
		bus.Publish(events.Event{Time: t0.Add(time.Duration(i) * time.Second), Allowed: i%2 == 0, Method: "mab",
			MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), NAS: "sw1", Source: events.SourceUpstream})
	}
	_, c := startServer(t, Options{Events: bus}, nil)
	tests := []struct {
		name string
		n    int
		want []string // MACs
	}{
		{"last two", 2, []string{"02:00:00:00:00:05", "02:00:00:00:00:06"}},
		{"all kept", 100, []string{"02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04", "02:00:00:00:00:05", "02:00:00:00:00:06"}},
		{"none", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := c.Events(context.Background(), tc.n, false, func(ev events.Event) error {
				got = append(got, ev.MAC)
				return nil
			})
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestEventsFollow(t *testing.T) {
	base := runtime.NumGoroutine()
	bus := events.New(events.Options{})
	bus.Publish(events.Event{Identity: "before"})
	s, c := startServer(t, Options{Events: bus}, func(s *Server) { s.heartbeat = 20 * time.Millisecond })
	_ = s
	c.Timeout = 200 * time.Millisecond // heartbeats must keep a quiet stream alive
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ctx, 10, true, func(ev events.Event) error {
			got <- ev.Identity
			return nil
		})
	}()
	if id := <-got; id != "before" {
		t.Fatalf("first = %q", id)
	}
	waitFor(t, func() bool { return bus.Subscribers() == 1 })
	time.Sleep(500 * time.Millisecond) // longer than the client timeout: only heartbeats flow
	bus.Publish(events.Event{Identity: "live"})
	select {
	case id := <-got:
		if id != "live" {
			t.Fatalf("live = %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no live event")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Events after cancel = %v", err)
	}
	waitFor(t, func() bool { return bus.Subscribers() == 0 })
	// A callback error ends the stream with that error.
	stop := errors.New("enough")
	if err := c.Events(context.Background(), 10, true, func(events.Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Events with failing fn = %v", err)
	}
	waitFor(t, func() bool { return bus.Subscribers() == 0 })
	c.http().CloseIdleConnections()
	checkGoroutines(t, base+4) // the server's own goroutines (Run, serve) remain until cleanup
}

// TestEventsFollowShutdown: a daemon stopping ends a followed stream cleanly.
func TestEventsFollowShutdown(t *testing.T) {
	bus := events.New(events.Options{})
	o := Options{Path: socketPath(t), Group: "-", Events: bus}
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	c := Dial(o.Path)
	waitFor(t, func() bool { return c.Probe(context.Background()) == nil })
	done := make(chan error, 1)
	go func() { done <- c.Events(context.Background(), 0, true, func(events.Event) error { return nil }) }()
	waitFor(t, func() bool { return bus.Subscribers() == 1 })
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("Run = %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Events after shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end")
	}
}

func TestClients(t *testing.T) {
	want := []NASClient{{Name: "sw1", Address: "10.0.0.0/24", Vendor: "cisco", Site: "HQ", Requests: 10, Responses: 7,
		BadAuthenticator: 3, LastSeen: t0}}
	_, c := startServer(t, Options{Clients: func() []NASClient { return want }}, nil)
	got, err := c.Clients(context.Background())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Clients = %+v, %v", got, err)
	}
}

func TestNACEndpointErrors(t *testing.T) {
	_, c := startServer(t, Options{Events: events.New(events.Options{})}, nil)
	tests := []struct {
		name string
		call func() error
		code int
	}{
		{"no clients source", func() error { _, err := c.Clients(context.Background()); return err }, http.StatusServiceUnavailable},
		{"bad n", func() error {
			_, err := c.do(context.Background(), http.MethodGet, "/v1/events", map[string][]string{"n": {"-1"}}, nil)
			return err
		}, http.StatusBadRequest},
		{"bad follow", func() error {
			_, err := c.do(context.Background(), http.MethodGet, "/v1/events", map[string][]string{"follow": {"yes"}}, nil)
			return err
		}, http.StatusBadRequest},
		{"post", func() error {
			_, err := c.do(context.Background(), http.MethodPost, "/v1/events", nil, nil)
			return err
		}, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var re *RemoteError
			if err := tc.call(); !errors.As(err, &re) || re.Status != tc.code {
				t.Fatalf("err = %v, want status %d", err, tc.code)
			}
		})
	}
	_, c2 := startServer(t, Options{}, nil)
	var re *RemoteError
	if err := c2.Events(context.Background(), 1, false, func(events.Event) error { return nil }); !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Fatalf("events without a bus = %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
