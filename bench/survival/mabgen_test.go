package survival

import (
	"testing"
	"time"
)

// TestLoadMABClosedCounts: the batched closed-loop generator accounts for every request it sent:
// answered, answered wrongly (counted by kind) or timed out, against an edge stand-in that drops
// or mis-answers every n-th request.
func TestLoadMABClosedCounts(t *testing.T) {
	tests := []struct {
		name        string
		drop, wrong int
	}{
		{"all answered", 0, 0},
		{"every 10th dropped", 10, 0},
		{"every 8th wrong VLAN", 0, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeEdge(t, "s3cret", CachedVLAN, "41", tt.drop, tt.wrong)
			res, err := LoadMABClosed(t.Context(), ClosedMABOptions{Addr: addr, Secret: "s3cret", Concurrency: 8,
				Sockets: 2, Duration: 300 * time.Millisecond, Timeout: 100 * time.Millisecond, Cached: 50,
				HitVLAN: CachedVLAN, MissVLAN: "41"})
			if err != nil {
				t.Fatal(err)
			}
			wantLost, wantWrong := 0, 0
			if tt.drop > 0 {
				wantLost = res.Sent / tt.drop
			}
			if tt.wrong > 0 {
				wantWrong = res.Sent / tt.wrong
			}
			if res.Sent < 16 || res.Timeouts != wantLost || res.Errors["wrong-vlan"] != wantWrong ||
				res.ErrorCount() != wantWrong || res.Answered != res.Sent-wantLost-wantWrong || res.Stale != 0 {
				t.Fatalf("got %+v; want %d timed out and %d wrong VLANs of those sent", res, wantLost, wantWrong)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Errorf("percentiles out of order: %v %v %v", res.P50, res.P99, res.Max)
			}
		})
	}
}

// TestLoadMABPacedCounts: the paced generator sends its schedule whatever the answers do and
// accounts for every request.
func TestLoadMABPacedCounts(t *testing.T) {
	tests := []struct {
		name              string
		drop, wrong       int
		wantLost, wantBad int
	}{
		{"all answered", 0, 0, 0, 0},
		{"every 10th dropped", 10, 0, 40, 0},
		{"every 8th wrong VLAN", 0, 8, 0, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeEdge(t, "s3cret", CachedVLAN, "41", tt.drop, tt.wrong)
			res, err := LoadMABPaced(t.Context(), PacedMABOptions{Addr: addr, Secret: "s3cret", Rate: 400,
				Duration: time.Second, Sockets: 4, Cached: 50, HitVLAN: CachedVLAN, MissVLAN: "41",
				Drain: 300 * time.Millisecond, LateAfter: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 400 || res.Lost != tt.wantLost || res.Wrong != tt.wantBad || res.Stale != 0 ||
				res.IOErrors != 0 || res.Answered != 400-tt.wantLost-tt.wantBad || res.Late != 0 {
				t.Fatalf("got %+v; want 400 sent, %d lost, %d wrong", res, tt.wantLost, tt.wantBad)
			}
			if r := res.SendRate(); r < 380 || r > 420 {
				t.Errorf("send rate %.0f, want about 400", r)
			}
		})
	}
}

// TestMABGeneratorsRefuseBadOptions: every load loop is bounded, and bad options say which.
func TestMABGeneratorsRefuseBadOptions(t *testing.T) {
	for name, err := range map[string]error{
		"closed without duration": func() error {
			_, err := LoadMABClosed(t.Context(), ClosedMABOptions{Addr: "127.0.0.1:1", Secret: "s", Concurrency: 1, Cached: 1})
			return err
		}(),
		"closed beyond 256 per socket": func() error {
			_, err := LoadMABClosed(t.Context(), ClosedMABOptions{Addr: "127.0.0.1:1", Secret: "s", Concurrency: 300,
				Sockets: 1, Duration: time.Second, Cached: 1})
			return err
		}(),
		"paced without rate": func() error {
			_, err := LoadMABPaced(t.Context(), PacedMABOptions{Addr: "127.0.0.1:1", Secret: "s", Duration: time.Second, Cached: 1})
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
