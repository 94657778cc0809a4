// Package peertest runs the real RADIUS peers that mxedge is tested against:
// FreeRADIUS 3.2 (RadSec and UDP server, EAP-TLS, accounting log),
// radsecproxy 1.9 (the reference UDP→RadSec proxy, and a RadSec client),
// radclient (a NAS) and eapol_test (an 802.1X supplicant).
//
// It owns only the harness: every peer gets a configuration generated into a
// temp dir, listens on loopback ports, runs as a child process in its own
// process group and is stopped by pid. Nothing here reads or writes /etc
// (beyond copying the stock FreeRADIUS configuration as a template), talks
// to systemd or binds a non-loopback address — except inside the network
// namespaces of a WAN (netns.go), which the harness creates and deletes itself.
//
// Each long-running peer has two constructors: StartX(tb, o) for tests, which
// fails the test with the peer's log tail and registers Stop with t.Cleanup,
// and StartXContext(ctx, o) for the bench program, which returns an error and
// leaves Stop to the caller.
//
// peertest is imported only by _test.go files and by bench/; it imports no
// other mxedge package.
package peertest
