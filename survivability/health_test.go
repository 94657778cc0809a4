package survivability

import (
	"testing"
	"time"
)

// TestHealthUpstreamRemovedOnReload: an upstream that a reload renamed or removed does not keep the
// edge "up"; the new pool's upstreams decide.
func TestHealthUpstreamRemovedOnReload(t *testing.T) {
	h := NewHealth(HealthOptions{})
	h.UpstreamUp("old")
	h.Upstreams(map[string]bool{"new": false}) // reload: "old" renamed to "new", not connected
	if !h.Local() {
		t.Fatalf("mode %v after the only up upstream was removed", h.Mode())
	}
	h.UpstreamDown("old", "drained") // the retired pool's events no longer matter
	h.UpstreamUp("new")
	if h.Mode() != ModeUp {
		t.Fatalf("mode %v after the new upstream connected", h.Mode())
	}
	h.Upstreams(map[string]bool{"new": true, "other": false})
	if h.Mode() != ModeUp {
		t.Fatalf("mode %v after a reload that kept an up upstream", h.Mode())
	}
	h.UpstreamDown("new", "dead")
	if h.Mode() != ModeDown {
		t.Fatalf("mode %v with no upstream up", h.Mode())
	}
}

// TestHealthFlapWindow: outages older than FlapWindow are forgotten, so a later first outage fails
// back on the first proven connection again.
func TestHealthFlapWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHealth(HealthOptions{FailbackProbes: 2, FlapWindow: 10 * time.Second, Now: func() time.Time { return now }})
	h.UpstreamDown("a", "cut")
	h.UpstreamUp("a")
	h.UpstreamDown("a", "cut")
	h.UpstreamUp("a")
	if h.Mode() != ModeRecovering {
		t.Fatalf("second outage within the window: %v", h.Mode())
	}
	h.Probe("a", true)
	h.Probe("a", true)
	if h.Mode() != ModeUp {
		t.Fatalf("after the hold-down: %v", h.Mode())
	}
	now = now.Add(11 * time.Second)
	h.UpstreamDown("a", "cut")
	h.UpstreamUp("a")
	if h.Mode() != ModeUp {
		t.Fatalf("outage after a quiet window: %v", h.Mode())
	}
}

func TestHealthOptionsValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		o  HealthOptions
		ok bool
	}{
		"defaults":        {HealthOptions{}, true},
		"probes":          {HealthOptions{FailbackProbes: 3, StableAfter: time.Second}, true},
		"too many probes": {HealthOptions{FailbackProbes: 101}, false},
		"negative stable": {HealthOptions{StableAfter: -time.Second}, false},
	} {
		if err := tc.o.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

// TestHealthStablePeriodResetsFlaps: outages separated by a period longer than StableAfter each
// fail back on the first proven connection however many there were; one that begins sooner is a
// flap and is held down.
func TestHealthStablePeriodResetsFlaps(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHealth(HealthOptions{FailbackProbes: 2, StableAfter: 5 * time.Second, Now: func() time.Time { return now }})
	for i := range 8 {
		h.UpstreamDown("a", "cut")
		now = now.Add(6 * time.Second)
		h.UpstreamUp("a")
		if h.Mode() != ModeUp {
			t.Fatalf("outage %d after a stable period: %v, want up at once", i+1, h.Mode())
		}
		now = now.Add(6 * time.Second)
	}
	now = now.Add(time.Second)
	h.UpstreamDown("a", "cut") // 7 s after the last failback: stable
	h.UpstreamUp("a")
	now = now.Add(2 * time.Second)
	h.UpstreamDown("a", "cut") // 2 s after the failback: a flap
	h.UpstreamUp("a")
	if h.Mode() != ModeRecovering {
		t.Fatalf("outage 2 s after a failback: %v, want recovering", h.Mode())
	}
}
