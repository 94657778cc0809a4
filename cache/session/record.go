package session

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// State is where a session is in its life.
type State uint8

// States. The numeric values are stored in the record codec: never renumber them.
const (
	// StateAuthorized: an Access-Accept was seen, no accounting yet.
	StateAuthorized State = 1
	// StateActive: an Accounting Start or Interim-Update was seen (RFC 2866 §5.1).
	StateActive State = 2
	// StateStopped: an Accounting Stop was seen, or the NAS said Accounting-Off/On (it rebooted).
	// The record is kept StopGrace, then expires.
	StateStopped State = 3
)

var stateNames = [...]string{StateAuthorized: "authorized", StateActive: "active", StateStopped: "stopped"}

func (s State) String() string {
	if s >= StateAuthorized && s <= StateStopped {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Live reports whether the session has not ended.
func (s State) Live() bool { return s == StateAuthorized || s == StateActive }

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n != "" && strings.EqualFold(n, s) {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown state %q (want authorized, active or stopped)", ErrBadQuery, s)
}

// Decider says who admitted the session.
type Decider uint8

// Deciders. Stored in the codec: never renumber.
const (
	DecidedUnknown Decider = 0 // seen only in accounting (admitted before a restart, or by another server)
	DecidedCloud   Decider = 1 // the cloud NAC's Access-Accept, relayed over RadSec
	DecidedCache   Decider = 2 // locally, from the client's cached authorization
	DecidedDefault Decider = 3 // locally, a client not in the cache given its site's default VLAN
	DecidedPolicy  Decider = 4 // locally, by the edge's own rules (local accounts, local EAP-TLS without a cache entry)
)

var deciderNames = [...]string{"unknown", "cloud", "cache", "default", "policy"}

func (d Decider) String() string {
	if int(d) < len(deciderNames) {
		return deciderNames[d]
	}
	return fmt.Sprintf("decider(%d)", uint8(d))
}

// Local reports whether the edge admitted the session without the cloud.
func (d Decider) Local() bool { return d == DecidedCache || d == DecidedDefault || d == DecidedPolicy }

// Reconcile is where a locally admitted session stands with the cloud after an outage.
type Reconcile uint8

// Reconciliation states. Stored in the codec: never renumber.
const (
	ReconcileNone       Reconcile = 0 // the cloud admitted it (or nobody knows): nothing to do
	ReconcileNeeded     Reconcile = 1 // admitted locally: the cloud must re-authorize it after failback
	ReconcileDone       Reconcile = 2 // the cloud re-authorized it (MarkReconciled ok)
	ReconcileFailed     Reconcile = 3 // a re-authorization was attempted and failed (MarkReconciled not ok)
	ReconcileSuperseded Reconcile = 4 // it ended, or re-authenticated through the cloud, on its own
)

var reconcileNames = [...]string{"none", "needed", "reconciled", "failed", "superseded"}

func (r Reconcile) String() string {
	if int(r) < len(reconcileNames) {
		return reconcileNames[r]
	}
	return fmt.Sprintf("reconcile(%d)", uint8(r))
}

// Limits of stored fields: a RADIUS attribute carries at most 253 octets (RFC 2865 §5).
const (
	maxStringLen = 253
	macLen       = 6
)

// Record is one session. Times are UTC; the zero time means "not seen".
type Record struct {
	// ID is the store's key: assigned at creation, increasing, never reused.
	ID uint64
	// The NAS: the client entry's name and the address the request came from, its vendor
	// and site (from the edge's configuration).
	NAS, NASAddr, Vendor, Site string
	// Where the client is: NAS-Port (when HasNASPort), NAS-Port-Id, Called-Station-Id and the
	// SSID taken from it ("MAC:SSID", RFC 3580 §3.20).
	NASPort         uint32
	HasNASPort      bool
	NASPortID       string
	CalledStationID string
	SSID            string
	// Who the client is: Calling-Station-Id as sent, the MAC it names (canonical
	// aa:bb:cc:dd:ee:ff, "" when it names none) and User-Name.
	CallingStationID string
	MAC              string
	UserName         string
	// How it was admitted: method (mab, eap-tls, eap-peap, eap, pap, chap), VLAN
	// (Tunnel-Private-Group-ID), the Class the cloud returned (echoed in accounting, RFC 2865
	// §5.25), who decided, and where reconciliation stands.
	Method    string
	VLAN      string
	Class     []byte
	Decider   Decider
	Reconcile Reconcile
	// ReconcileAttempts counts MarkReconciled calls; ReconcileAt is the last one.
	ReconcileAttempts uint32
	ReconcileAt       time.Time
	// Accounting (RFC 2866 §5, RFC 2869 §5, RFC 3162 §2).
	AcctSessionID      string
	AcctMultiSessionID string
	FramedIP           netip.Addr   // Framed-IP-Address: IPv4 or invalid
	FramedIPv6         netip.Addr   // Framed-IPv6-Address (RFC 6911 §3.1): IPv6 or invalid
	FramedIPv6Prefix   netip.Prefix // Framed-IPv6-Prefix: masked, or invalid
	State              State
	InputOctets        uint64 // with Acct-Input-Gigawords (RFC 2869 §5.1)
	OutputOctets       uint64
	SessionTime        uint32 // Acct-Session-Time, seconds
	TerminateCause     uint32 // Acct-Terminate-Cause (RFC 2866 §5.10), 0 = none
	// Interim is Acct-Interim-Interval (from the Accept or the accounting), 0 = not sent.
	Interim time.Duration
	// Authorized is the last Access-Accept, Started the Start (or first accounting), Updated the
	// last accounting or Accept, Stopped the Stop; Expires is when the sweeper removes it.
	Authorized, Started, Updated, Stopped, Expires time.Time
	// Replication in a cluster of edges (docs/cluster.md). Origin is the edge that created the
	// record and OriginID its ID there: the record's name on every edge (ID is each edge's own
	// key). Edge is the edge that wrote the record last, AdmittedBy the edge whose Access-Accept
	// admitted it (the owner of its reconciliation), and Stamp the hybrid-clock time of the last
	// write, which decides a conflict (the later write wins, MergeReplica). All empty on an edge
	// outside a cluster.
	Origin, Edge, AdmittedBy string
	OriginID                 uint64
	Stamp                    time.Time
}

// replicated reports whether r carries any replication field (it is then encoded as version 2).
func (r *Record) replicated() bool {
	return r.Origin != "" || r.Edge != "" || r.AdmittedBy != "" || r.OriginID != 0 || !r.Stamp.IsZero()
}

// validate checks what the codec relies on.
func (r *Record) validate() error {
	if r.ID == 0 {
		return fmt.Errorf("%w: no id", ErrBadRecord)
	}
	if r.NAS == "" {
		return fmt.Errorf("%w: no nas", ErrBadRecord)
	}
	for _, f := range []struct{ name, v string }{
		{"nas", r.NAS}, {"nas address", r.NASAddr}, {"vendor", r.Vendor}, {"site", r.Site},
		{"nas-port-id", r.NASPortID}, {"called-station-id", r.CalledStationID}, {"ssid", r.SSID},
		{"calling-station-id", r.CallingStationID}, {"user-name", r.UserName}, {"method", r.Method},
		{"vlan", r.VLAN}, {"acct-session-id", r.AcctSessionID}, {"acct-multi-session-id", r.AcctMultiSessionID},
		{"origin", r.Origin}, {"edge", r.Edge}, {"admitted-by", r.AdmittedBy},
	} {
		if len(f.v) > maxStringLen {
			return fmt.Errorf("%w: %s: %d octets (at most %d)", ErrBadRecord, f.name, len(f.v), maxStringLen)
		}
	}
	if len(r.Class) > maxStringLen {
		return fmt.Errorf("%w: class: %d octets", ErrBadRecord, len(r.Class))
	}
	if r.MAC != "" {
		if _, ok := parseMAC(r.MAC); !ok {
			return fmt.Errorf("%w: mac %q is not aa:bb:cc:dd:ee:ff", ErrBadRecord, r.MAC)
		}
	}
	if r.FramedIP.IsValid() && !r.FramedIP.Is4() {
		return fmt.Errorf("%w: framed-ip-address %v is not IPv4", ErrBadRecord, r.FramedIP)
	}
	if r.FramedIPv6.IsValid() && (!r.FramedIPv6.Is6() || r.FramedIPv6.Zone() != "") {
		return fmt.Errorf("%w: framed-ipv6-address %v is not IPv6", ErrBadRecord, r.FramedIPv6)
	}
	if p := r.FramedIPv6Prefix; p.IsValid() && (!p.Addr().Is6() || p != p.Masked() || p.Addr().Zone() != "") {
		return fmt.Errorf("%w: framed-ipv6-prefix %v", ErrBadRecord, p)
	}
	if r.State < StateAuthorized || r.State > StateStopped {
		return fmt.Errorf("%w: state %d", ErrBadRecord, r.State)
	}
	if int(r.Decider) >= len(deciderNames) {
		return fmt.Errorf("%w: decider %d", ErrBadRecord, r.Decider)
	}
	if int(r.Reconcile) >= len(reconcileNames) {
		return fmt.Errorf("%w: reconcile %d", ErrBadRecord, r.Reconcile)
	}
	if (r.Origin == "") != (r.OriginID == 0) {
		return fmt.Errorf("%w: origin %q with origin id %d", ErrBadRecord, r.Origin, r.OriginID)
	}
	if r.Interim < 0 || r.Interim%time.Second != 0 || r.Interim > maxInterim {
		return fmt.Errorf("%w: interim %v", ErrBadRecord, r.Interim)
	}
	return nil
}

// maxInterim bounds Acct-Interim-Interval as stored (a 32-bit count of seconds).
const maxInterim = (1<<32 - 1) * time.Second

// parseMAC reads the canonical aa:bb:cc:dd:ee:ff form (the tracker normalizes what NASes send
// with cache.NormalizeMAC, RFC 3580 §3.21).
func parseMAC(s string) ([macLen]byte, bool) {
	var out [macLen]byte
	if len(s) != 17 {
		return out, false
	}
	for i := range macLen {
		if i > 0 && s[3*i-1] != ':' {
			return out, false
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return out, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false // upper case is not canonical
}

func formatMAC(b [macLen]byte) string {
	const hexdigits = "0123456789abcdef"
	var out [17]byte
	for i, v := range b {
		out[3*i] = hexdigits[v>>4]
		out[3*i+1] = hexdigits[v&0x0f]
		if i < macLen-1 {
			out[3*i+2] = ':'
		}
	}
	return string(out[:])
}

// userMAC reads a User-Name that is a MAC address as MAB sends it: twelve hex digits of either
// case, with or without ':', '-' or '.' between them (RFC 3580 §3.21's forms and the vendors').
func userMAC(s string) ([macLen]byte, bool) {
	var out [macLen]byte
	if len(s) < 2*macLen || len(s) > 17 {
		return out, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == '-' || c == '.':
			continue
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		}
		v, ok := unhex(c)
		if !ok || n == 2*macLen {
			return out, false
		}
		out[n/2] |= v << (4 * (1 - n%2))
		n++
	}
	return out, n == 2*macLen
}

// userIsMAC reports whether r's User-Name names r's own MAC (MAB): the MAC index finds such a
// record by its User-Name too, so the User-Name index holds no entry for it (indexKeys, Find).
func userIsMAC(r *Record) bool {
	u, ok := userMAC(r.UserName)
	if !ok {
		return false
	}
	m, ok := parseMAC(r.MAC)
	return ok && m == u
}

// foldUser is the User-Name index form: ASCII case folded, as NAS implementations differ in the
// case they send (the cache's identity index does the same).
func foldUser(s string) string { return strings.ToLower(s) }
