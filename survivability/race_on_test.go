//go:build race

package survivability

// raceEnabled: the race detector's instrumentation makes values escape that otherwise stay on the
// stack, so allocation counts are only exact without it.
const raceEnabled = true
