package proxy

// LockedBuffer is lockedBuffer (upstream_test.go) for the package's external tests.
type LockedBuffer = lockedBuffer
