package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// Exit codes of `mxedge test auth` (documented in its --help and docs/operations.md): a script
// tells a policy answer from a broken path without parsing the output.
const (
	ExitTestAccept  = 0 // Access-Accept, Accounting-Response, or any answer to Status-Server
	ExitTestReject  = 1 // Access-Reject
	ExitTestUsage   = 2 // bad flags or attribute
	ExitTestTimeout = 3 // no valid answer within --timeout (wrong secret, firewall, not a client)
	ExitTestError   = 4 // anything else: ICMP unreachable, TLS handshake, a reply that does not verify
)

// testAuthExit gives err the exit code of its kind.
func testAuthExit(err error) error {
	if err == nil {
		return nil
	}
	code := ExitTestError
	switch {
	case errors.Is(err, ErrRejected):
		code = ExitTestReject
	case errors.Is(err, ErrUsage):
		code = ExitTestUsage
	case errors.Is(err, syscall.ECONNREFUSED):
		code = ExitTestError // ICMP port unreachable: nothing listens, which is not a timeout
	case errors.Is(err, ErrNoAnswer):
		code = ExitTestTimeout
	}
	return &ExitError{Code: code, Err: err}
}

// Acct-Status-Type values (RFC 2866 §5.1).
var acctStatusTypes = map[string]uint32{"start": 1, "stop": 2, "interim": 3, "interim-update": 3}

// buildAccounting builds an Accounting-Request (RFC 2866 §4.1): its Request Authenticator is the
// MD5 over the packet with a zero authenticator and the secret (§3), which Finish computes.
func (f *testAuthFlags) buildAccounting(dst []byte, id uint8, secret []byte) (packet.Packet, error) {
	var zero [packet.AuthLen]byte
	b := packet.New(dst, packet.CodeAccountingRequest, id, zero[:])
	b.AddUint32(packet.AttrAcctStatusType, acctStatusTypes[f.acct])
	b.AddString(packet.AttrAcctSessionID, f.sessionID)
	user, calling := f.user, f.calling
	if f.mac != "" {
		mac, err := cache.NormalizeMAC(f.mac)
		if err != nil {
			return nil, fmt.Errorf("%w: --mac: %w", ErrUsage, err)
		}
		if user == "" {
			user = strings.ReplaceAll(mac, ":", "")
		}
		if calling == "" {
			calling = strings.ToUpper(strings.ReplaceAll(mac, ":", "-"))
		}
	}
	b.AddString(packet.AttrUserName, user)
	b.AddUint32(packet.AttrAcctDelayTime, 0)
	if f.acct != "start" {
		b.AddUint32(attrAcctSessionTime, uint32(f.sessionTime/time.Second))
	}
	if f.acct == "stop" && !f.hasExtra(0, attrAcctTerminateCause) {
		b.AddUint32(attrAcctTerminateCause, 1) // User-Request
	}
	f.addNASAttrs(&b, calling)
	return b.Finish(secret, nil)
}

const (
	attrAcctSessionTime    = 46 // RFC 2866 §5.7
	attrAcctTerminateCause = 49 // RFC 2866 §5.10
)

func (f *testAuthFlags) hasExtra(vendor uint32, code uint8) bool {
	for _, a := range f.extra {
		if a.vendor == vendor && a.code == code {
			return true
		}
	}
	return false
}

// checkAcct validates the accounting flags; it runs from mode().
func (f *testAuthFlags) checkAcct() error {
	if _, ok := acctStatusTypes[f.acct]; !ok {
		return fmt.Errorf("%w: --acct %q: want start, interim or stop", ErrUsage, f.acct)
	}
	if f.user == "" && f.mac == "" {
		return fmt.Errorf("%w: --acct needs --user or --mac", ErrUsage)
	}
	if f.password != "" {
		return fmt.Errorf("%w: --acct sends no password", ErrUsage)
	}
	if f.sessionTime < 0 {
		return fmt.Errorf("%w: --session-time must not be negative", ErrUsage)
	}
	if f.sessionID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		f.sessionID = strings.ToUpper(hex.EncodeToString(b[:]))
	}
	return nil
}
