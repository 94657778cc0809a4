package identity

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Schema names the version of the event document an https sink sends (docs/identity.md). A change
// that removes or renames a field is a new version; new fields may be added within one.
const Schema = "mxedge.identity.events.v1"

// StatusSchema names the version of `mxedge identity status -o json` (docs/output.md).
const StatusSchema = "mxedge.identity.v1"

// Kind is an event's type.
type Kind uint8

// Event types. Connect and re-authentication of a live session share one name upstream in the
// JIMS push this follows (IKE_VPN_UP_ALARM_USER for both); here a re-authentication is an Update
// with reason "reauth", which a consumer that only knows up/down can treat as a connect.
const (
	KindConnect    Kind = 1
	KindUpdate     Kind = 2
	KindDisconnect Kind = 3
)

// Kinds lists every type in a fixed order (status, metrics).
var Kinds = []Kind{KindConnect, KindUpdate, KindDisconnect}

func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindUpdate:
		return "update"
	case KindDisconnect:
		return "disconnect"
	}
	return "unknown"
}

// Reasons an event was emitted for.
const (
	ReasonStart          = "start"           // Accounting Start with an address
	ReasonAddressLearned = "address-learned" // the first address came later (Interim-Update)
	ReasonAddressChanged = "address-changed" // Interim-Update with another address
	ReasonReauth         = "reauth"          // an Access-Accept for a live session
	ReasonStop           = "stop"            // Accounting Stop
	ReasonExpired        = "expired"         // no accounting for the session timeout
)

// Session is what identity needs to know of one session: the session table's record. The tracker
// (tracker.go) builds them from accounting and Access-Accepts.
type Session struct {
	NAS        string // configured NAS client name
	NASAddress string // NAS-IP-Address / NAS-IPv6-Address, else the source address
	NASPort    string // NAS-Port-Id, else NAS-Port
	SessionID  string // Acct-Session-Id
	UserName   string // User-Name of the accounting
	Identity   string // User-Name of the Access-Accept (the cloud-confirmed identity)
	CUI        string // Chargeable-User-Identity (RFC 4372)
	MAC        string // Calling-Station-Id, normalised aa:bb:cc:dd:ee:ff when it is a MAC
	SSID       string // from Called-Station-Id "BSSID:SSID" (RFC 3580 §3.20)
	Site       string // the NAS client's site
	VLAN       string // Tunnel-Private-Group-Id of the Access-Accept
	Method     string // mab | eap | pap (how the session was authorized)
	Authorizer string // cloud | local
	Addrs      []netip.Addr
	Started    time.Time
	Updated    time.Time
	AuthTime   time.Time // the last Access-Accept seen for it
	Ended      bool
	EndReason  string // ReasonStop | ReasonExpired
	// Key, when set, orders the session's events instead of SessionID (the session table's
	// record id, stable from the Access-Accept on, before accounting names the session).
	Key string
}

// orderKey is what a session's events are ordered by.
func (s *Session) orderKey() string {
	if s.Key != "" {
		return sessionKey(s.NAS, "#"+s.Key)
	}
	return sessionKey(s.NAS, s.SessionID)
}

// Change decides what event, if any, a session change is: prev is the record before (nil for a new
// session), cur after. Only sessions with an address make events: identity services map addresses
// to users, and an address-less session maps nothing.
func Change(prev, cur *Session) (Kind, string, bool) {
	switch {
	case cur == nil:
		if prev != nil && len(prev.Addrs) > 0 {
			return KindDisconnect, ReasonExpired, true
		}
		return 0, "", false
	case cur.Ended:
		if len(cur.Addrs) > 0 || (prev != nil && len(prev.Addrs) > 0) {
			r := cur.EndReason
			if r == "" {
				r = ReasonStop
			}
			return KindDisconnect, r, true
		}
		return 0, "", false
	case len(cur.Addrs) == 0:
		return 0, "", false
	case prev == nil || len(prev.Addrs) == 0:
		if prev == nil {
			return KindConnect, ReasonStart, true
		}
		return KindConnect, ReasonAddressLearned, true
	case !sameAddrs(prev.Addrs, cur.Addrs):
		return KindUpdate, ReasonAddressChanged, true
	case cur.AuthTime.After(prev.AuthTime) && !prev.AuthTime.IsZero():
		return KindUpdate, ReasonReauth, true
	}
	return 0, "", false
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

// Event is one connection-state event as every JSON-speaking sink sends it (schema
// mxedge.identity.events.v1, docs/identity.md and docs/api/openapi.yaml IdentityEvent). Keys are
// snake_case; times are RFC 3339 UTC.
type Event struct {
	ID           string    `json:"id"` // unique per edge: session key and event number
	Type         string    `json:"type"`
	Reason       string    `json:"reason"`
	Time         time.Time `json:"time"`
	User         string    `json:"user"`          // without the realm
	UserFull     string    `json:"user_full"`     // as the chosen source gave it
	UserSource   string    `json:"user_source"`   // user-name | identity | cui
	Domain       string    `json:"domain"`        // realm, alias, or the missing-domain marker
	DomainSource string    `json:"domain_source"` // realm | ssid | site | missing
	IPAddresses  []string  `json:"ip_addresses"`
	MAC          string    `json:"mac,omitempty"`
	NAS          string    `json:"nas"`
	NASAddress   string    `json:"nas_address,omitempty"`
	NASPort      string    `json:"nas_port,omitempty"`
	SSID         string    `json:"ssid,omitempty"`
	Site         string    `json:"site,omitempty"`
	VLAN         string    `json:"vlan,omitempty"`
	SessionID    string    `json:"session_id"`
	SessionStart time.Time `json:"session_start"`
	Method       string    `json:"method,omitempty"`
	AuthorizedBy string    `json:"authorized_by,omitempty"` // cloud | local
}

// sessionKey identifies a session across events: ordering is kept per key.
func sessionKey(nas, id string) string { return nas + "\x00" + id }

// UserSources are the values of Options.UserSource.
var UserSources = []string{"user-name", "identity", "cui"}

// Domains derives an event's domain (docs/identity.md "Domain").
type Domains struct {
	// SSIDs and Sites map an SSID or a site to the domain of users who give none; an SSID's
	// alias wins over its site's.
	SSIDs map[string]string
	Sites map[string]string
	// Missing is sent when no domain is known. Default DefaultMissingDomain.
	Missing string
}

// DefaultMissingDomain is the marker the JIMS push sends for a user without a domain.
const DefaultMissingDomain = "missing-domain-secureconnect"

// Split returns the user without its realm, the domain and where the domain came from:
// "user@realm" and "DOMAIN\user" carry their own (RFC 7542 §2.2 for the NAI form).
func (d Domains) Split(user, site, ssid string) (name, domain, source string) {
	if i := strings.LastIndexByte(user, '@'); i > 0 && i < len(user)-1 {
		return user[:i], user[i+1:], "realm"
	}
	if i := strings.IndexByte(user, '\\'); i > 0 && i < len(user)-1 {
		return user[i+1:], user[:i], "realm"
	}
	if a, ok := d.SSIDs[ssid]; ok && ssid != "" && a != "" {
		return user, a, "ssid"
	}
	if a, ok := d.Sites[site]; ok && site != "" && a != "" {
		return user, a, "site"
	}
	m := d.Missing
	if m == "" {
		m = DefaultMissingDomain
	}
	return user, m, "missing"
}

// Filter selects the events a sink gets; an empty list matches everything.
type Filter struct {
	Sites   []string
	SSIDs   []string
	Methods []string // mab | eap (any EAP method) | eap-tls | eap-peap | eap-ttls | pap | chap
}

// Match reports whether s passes the filter.
func (f Filter) Match(s *Session) bool {
	if !matchList(f.Sites, s.Site) || !matchList(f.SSIDs, s.SSID) {
		return false
	}
	if len(f.Methods) == 0 {
		return true
	}
	for _, m := range f.Methods {
		if m == s.Method || (m == "eap" && strings.HasPrefix(s.Method, "eap")) {
			return true
		}
	}
	return false
}

// Methods are the values a filter's methods may list.
var Methods = []string{"mab", "eap", "eap-tls", "eap-peap", "eap-ttls", "eap-fast", "pap", "chap"}

func matchList(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

// build turns a session change into its event.
func build(kind Kind, reason string, s *Session, userSource string, d Domains, now time.Time, n uint64) Event {
	full := s.UserName
	switch userSource {
	case "identity":
		if s.Identity != "" {
			full = s.Identity
		}
	case "cui":
		if s.CUI != "" {
			full = s.CUI
		}
	}
	if userSource == "" {
		userSource = "user-name"
	}
	name, domain, dsrc := d.Split(full, s.Site, s.SSID)
	ev := Event{
		ID: s.NAS + "/" + s.SessionID + "/" + uitoa(n), Type: kind.String(), Reason: reason, Time: now.UTC(),
		User: name, UserFull: full, UserSource: userSource, Domain: domain, DomainSource: dsrc,
		IPAddresses: make([]string, 0, len(s.Addrs)), MAC: s.MAC, NAS: s.NAS, NASAddress: s.NASAddress,
		NASPort: s.NASPort, SSID: s.SSID, Site: s.Site, VLAN: s.VLAN, SessionID: s.SessionID,
		SessionStart: s.Started.UTC(), Method: s.Method, AuthorizedBy: s.Authorizer,
	}
	for _, a := range s.Addrs {
		ev.IPAddresses = append(ev.IPAddresses, a.String())
	}
	return ev
}

func uitoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
