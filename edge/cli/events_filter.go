package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"mxedge/cache"
	"mxedge/edge/events"
)

// eventFilter selects the events `mxedge events` prints. Every set field must match.
type eventFilter struct {
	typ, nas, mac, user, site, method, verdict, since string

	macNorm  string
	sinceAt  time.Time
	anything bool
}

func (f *eventFilter) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.typ, "type", "", `only events whose type contains this text, any case ("denied", "NAC Client Certificate Expired")`)
	fl.StringVar(&f.nas, "nas", "", "only events from this NAS client (its name in the configuration)")
	fl.StringVar(&f.mac, "mac", "", "only events of this client MAC address, any notation")
	fl.StringVar(&f.user, "user", "", "only events of this identity (User-Name or certificate identity), any case")
	fl.StringVar(&f.site, "site", "", "only events of NAS clients of this site")
	fl.StringVar(&f.method, "method", "", "only events of this method: mab, eap-tls, pap, eap, accounting")
	fl.StringVar(&f.verdict, "verdict", "", "only accept or reject")
	fl.StringVar(&f.since, "since", "", "only events at or after this time: a duration back from now (15m, 2h) or RFC 3339")
}

// compile checks the flags; now anchors --since given as a duration.
func (f *eventFilter) compile(now time.Time) error {
	if f.mac != "" {
		m, err := cache.NormalizeMAC(f.mac)
		if err != nil {
			return fmt.Errorf("%w: --mac: %w", ErrUsage, err)
		}
		f.macNorm = m
	}
	switch f.verdict {
	case "", "accept", "reject":
	default:
		return fmt.Errorf("%w: --verdict %q: want accept or reject", ErrUsage, f.verdict)
	}
	if f.since != "" {
		t, err := parseSince(f.since, now)
		if err != nil {
			return err
		}
		f.sinceAt = t
	}
	f.anything = f.typ != "" || f.nas != "" || f.mac != "" || f.user != "" || f.site != "" || f.method != "" ||
		f.verdict != "" || f.since != ""
	return nil
}

// parseSince reads "15m" (back from now) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%w: --since %q: a duration back from now must not be negative", ErrUsage, s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: --since %q: want a duration (15m, 2h) or an RFC 3339 time (2026-11-22T08:00:00Z)", ErrUsage, s)
	}
	return t, nil
}

func (f *eventFilter) match(ev events.Event) bool {
	switch {
	case f.typ != "" && !strings.Contains(strings.ToLower(ev.Type), strings.ToLower(f.typ)):
	case f.nas != "" && ev.NAS != f.nas:
	case f.site != "" && ev.Site != f.site:
	case f.method != "" && !strings.EqualFold(ev.Method, f.method):
	case f.user != "" && !strings.EqualFold(ev.Identity, f.user) && !strings.EqualFold(ev.CertCN, f.user):
	case f.macNorm != "" && normMAC(ev.MAC) != f.macNorm:
	case f.verdict == "accept" && !ev.Allowed, f.verdict == "reject" && ev.Allowed:
	case !f.sinceAt.IsZero() && ev.Time.Before(f.sinceAt):
	default:
		return true
	}
	return false
}

func normMAC(s string) string {
	m, err := cache.NormalizeMAC(s)
	if err != nil {
		return s
	}
	return m
}

// lastN keeps the last n items a stream yields (n > 0), in order.
type lastN[T any] struct {
	n    int
	ring []T
	next int
	full bool
}

func (l *lastN[T]) add(v T) {
	if len(l.ring) < l.n {
		l.ring = append(l.ring, v)
		return
	}
	l.ring[l.next] = v
	l.next = (l.next + 1) % l.n
	l.full = true
}

func (l *lastN[T]) items() []T {
	if !l.full {
		return l.ring
	}
	return append(append([]T(nil), l.ring[l.next:]...), l.ring[:l.next]...)
}

// eventDoc is the schema mxedge.event.v1 (docs/output.md): one line of `events -o json`.
type eventDoc struct {
	Schema      string   `json:"schema"`
	At          string   `json:"at"`
	Decision    string   `json:"decision"` // accept, reject
	Method      string   `json:"method"`
	MAC         string   `json:"mac"`
	Identity    string   `json:"identity"`
	NAS         string   `json:"nas"`
	Site        string   `json:"site"`
	VLAN        string   `json:"vlan"`
	Source      string   `json:"source"` // upstream, local, external, route
	Upstream    string   `json:"upstream"`
	Route       string   `json:"route"` // source external or route: the route, its pool, the realm
	Pool        string   `json:"pool"`
	Realm       string   `json:"realm"`
	Reason      string   `json:"reason"`
	Type        string   `json:"type"`
	Certificate *certEvt `json:"certificate"`
}

type certEvt struct {
	Serial    string  `json:"serial"`
	CN        string  `json:"cn"`
	Issuer    string  `json:"issuer"`
	ExpiresAt *string `json:"expires_at"`
}

func eventToDoc(ev events.Event) eventDoc {
	d := eventDoc{Schema: "mxedge.event.v1", At: ev.Time.UTC().Format(time.RFC3339Nano), Decision: "reject", Method: ev.Method,
		MAC: ev.MAC, Identity: ev.Identity, NAS: ev.NAS, Site: ev.Site, VLAN: ev.VLAN, Source: ev.Source, Upstream: ev.Upstream,
		Route: ev.Route, Pool: ev.Pool, Realm: ev.Realm, Reason: ev.Reason, Type: ev.Type}
	if ev.Allowed {
		d.Decision = "accept"
	}
	if ev.CertSerial != "" || ev.CertCN != "" || ev.CertIssuer != "" || !ev.CertNotAfter.IsZero() {
		d.Certificate = &certEvt{Serial: ev.CertSerial, CN: ev.CertCN, Issuer: ev.CertIssuer, ExpiresAt: atTime(ev.CertNotAfter)}
	}
	return d
}
