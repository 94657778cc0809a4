package dynauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"mxedge/proxy"
)

// DefaultPort is the Dynamic Authorization port (RFC 5176 §2.2; IANA "radius-dynauth").
const DefaultPort = 3799

// Defaults of Options.
const (
	DefaultTimeout         = time.Second
	DefaultRetries         = 3
	DefaultMaxOutstanding  = 64
	DefaultDuplicateWindow = 10 * time.Second
)

// NAS is a configured NAS client as a CoA destination.
type NAS struct {
	Name   string
	Prefix netip.Prefix // a single address is a /32 or /128
	Secret proxy.Secret
	// CoAPort is where the NAS listens for CoA and Disconnect. Default 3799.
	CoAPort uint16
	Vendor  string // drives what a vendor-aware action renders to (see Render)
	Site    string
}

// Options configure the relay. Zero values take the documented defaults.
type Options struct {
	// Listen are the UDP addresses of the Dynamic Authorization listener for on-prem CoA clients
	// (host:port). None: only the cloud, over RadSec, can send CoA.
	Listen []string
	// Clients may send CoA-Request and Disconnect-Request to Listen. Their
	// RequireMessageAuthenticator and LimitProxyState apply as on the front door.
	Clients []proxy.Client
	// NASes are the NAS clients requests are relayed to.
	NASes []NAS
	// Source is the local address requests to NASes are sent from. Default: any (0.0.0.0:0).
	Source string
	// Timeout is the wait for the NAS's first answer; each retransmission doubles it. Default 1s.
	Timeout time.Duration
	// Retries is how many times an unanswered request is retransmitted before the requester gets
	// a NAK with Error-Cause 506. Default 3; negative: none.
	Retries int
	// MaxOutstanding bounds the requests waiting for one NAS's answer (at most 256, the RADIUS
	// identifiers). A request beyond it gets a NAK with Error-Cause 506 at once. Default 64.
	MaxOutstanding int
	// DuplicateWindow is how long an answered request's answer is kept for retransmissions of it
	// (RFC 5176 §2.3, RFC 5080 §2.2.2). Default 10s.
	DuplicateWindow time.Duration
	// Sessions finds the NAS of a request that names none. Nil: such requests get Error-Cause 503.
	Sessions Sessions
	// Observer sees each request's outcome (NAC events, decision log); nil: none.
	Observer Observer
	Logger   *slog.Logger
	Now      func() time.Time
}

// Validate checks the options before any socket is bound.
func (o *Options) Validate() error {
	names := map[string]bool{}
	for i, n := range o.NASes {
		if n.Name == "" {
			return fmt.Errorf("dynauth: NAS %d without a name", i)
		}
		if names[n.Name] {
			return fmt.Errorf("dynauth: two NASes named %q", n.Name)
		}
		names[n.Name] = true
		if !n.Prefix.IsValid() {
			return fmt.Errorf("dynauth: NAS %q: invalid address", n.Name)
		}
		if len(n.Secret) == 0 {
			return fmt.Errorf("dynauth: NAS %q: no secret", n.Name)
		}
	}
	if _, err := proxy.NewClientTable(o.Clients, nil); err != nil {
		return fmt.Errorf("dynauth: clients: %w", err)
	}
	for _, c := range o.Clients {
		if len(c.Secret) == 0 {
			return fmt.Errorf("dynauth: client %q: no secret", c.Name)
		}
	}
	if o.MaxOutstanding > 256 {
		return errors.New("dynauth: max_outstanding above 256 (the RADIUS identifiers)")
	}
	if o.Timeout < 0 || o.DuplicateWindow < 0 {
		return errors.New("dynauth: negative timeout or duplicate window")
	}
	for _, a := range o.Listen {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return fmt.Errorf("dynauth: listen %q: %w", a, err)
		}
	}
	if o.Source != "" {
		if _, err := netip.ParseAddrPort(o.Source); err != nil {
			return fmt.Errorf("dynauth: source %q: %w", o.Source, err)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = DefaultMaxOutstanding
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.Source == "" {
		o.Source = "0.0.0.0:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// SessionQuery is what a request names of its session (RFC 5176 §3: session identification).
type SessionQuery struct {
	AcctSessionID    string
	CallingStationID string // as the request carries it; the table normalises MACs
	UserName         string
	FramedIP         netip.Addr
}

// SessionRef is where a session lives, and how the NAS names it.
type SessionRef struct {
	NAS     string     // the NAS client's name
	NASAddr netip.Addr // the NAS's address the session's requests came from
	// The session identification as the NAS sent it (for requests the edge originates).
	AcctSessionID, CallingStationID, UserName string
	FramedIP                                  netip.Addr
}

// Sessions finds the NAS holding a session. The relay declares it because it calls it; the
// session table implements it. It must not block for long: it runs on a socket's reader.
type Sessions interface {
	FindSession(q SessionQuery) (SessionRef, bool)
}

// Outcome is one relayed (or refused) request, for events and the decision log.
type Outcome struct {
	Code       string // CoA-Request or Disconnect-Request
	From       string // who asked: a Dynamic Authorization client's name, or "cloud:<upstream>"
	NAS        string // "" when unroutable
	Route      string // how the NAS was found: operator-nas-identifier, nas-ip-address, …, session
	Session    SessionQuery
	Result     string // ack, nak, timeout
	ErrorCause uint32 // of a NAK, 0 if none
	Dur        time.Duration
}

// Observer sees outcomes. It is called from the relay's goroutines and must not block.
type Observer interface {
	DynAuthOutcome(o Outcome)
}
