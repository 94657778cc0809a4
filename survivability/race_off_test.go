//go:build !race

package survivability

const raceEnabled = false
