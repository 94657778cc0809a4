package resolve

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Resolve returns wraps one of them (through a
// *StaleError or directly), so callers branch with errors.Is, never on text.
var (
	// ErrNotFound: the name does not exist (RCODE NXDOMAIN, RFC 1035 §4.1.1).
	ErrNotFound = errors.New("resolve: no such host")
	// ErrNoAnswer: the name exists but has no records of the type asked for
	// (NODATA, RFC 2308 §2.2), or no lookup produced a usable address.
	ErrNoAnswer = errors.New("resolve: no addresses")
	// ErrServerFailure: the name server answered SERVFAIL, REFUSED or another
	// error RCODE, or sent a response that does not match the question.
	ErrServerFailure = errors.New("resolve: server failure")
	// ErrTimeout: no name server answered within Options.Timeout on any attempt.
	ErrTimeout = errors.New("resolve: timeout")
	// ErrServiceUnavailable: the SRV RRset says the service is decidedly not
	// offered at this domain (a single record with target ".", RFC 2782).
	ErrServiceUnavailable = errors.New("resolve: service not available")
	// ErrInvalidName: the host given to Resolve is neither an IP literal nor a
	// syntactically valid domain name.
	ErrInvalidName = errors.New("resolve: invalid host name")
)

// StaleError is returned together with a non-empty target list when fresh
// resolution failed in part or in whole: the targets are the last good answer
// for the lookups that failed (plus fresh answers for the ones that worked).
// The caller keeps using the targets and logs Cause; the Resolver has already
// logged each failed lookup once at Warn.
type StaleError struct {
	Host  string // the upstream as given to Resolve
	Cause error  // why fresh resolution failed; wraps ErrTimeout, ErrNotFound, …
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("resolve: %s: using last good addresses: %v", e.Host, e.Cause)
}

func (e *StaleError) Unwrap() error { return e.Cause }

// reason maps an error to the short word logged under the "reason" key.
func reason(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrNotFound):
		return "nxdomain"
	case errors.Is(err, ErrServerFailure):
		return "servfail"
	case errors.Is(err, ErrNoAnswer):
		return "nodata"
	case errors.Is(err, ErrServiceUnavailable):
		return "no-service"
	default:
		return "error"
	}
}
