//go:build race

package edge

// raceEnabled: the race detector makes sync.Pool drop a share of what is put back, so allocation
// counts on pooled paths are only exact without it.
const raceEnabled = true
