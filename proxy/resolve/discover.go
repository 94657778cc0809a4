package resolve

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// S-NAPTR service tags for Discover.
const (
	// ServiceEduroam is the tag eduroam publishes for RadSec servers.
	ServiceEduroam = "x-eduroam:radius.tls"
	// ServiceRADIUSTLS is the RFC 7585 tag for RADIUS/TLS authentication.
	ServiceRADIUSTLS = "aaa+auth:radius.tls.tcp"
	// DefaultPort is the RadSec port (RFC 6614 §2.1), used for NAPTR
	// records with the "a" flag, which carry no port.
	DefaultPort = 2083
	// maxNAPTR caps how many matching NAPTR records are followed.
	maxNAPTR = 8
)

// Discover finds the RadSec servers of a realm by dynamic discovery
// (RFC 7585): the NAPTR RRset of realm is filtered to records with the given
// service tag (ServiceEduroam, ServiceRADIUSTLS), an empty regexp and a
// terminal flag (RFC 3958 S-NAPTR): "s" leads to the SRV RRset named by the
// replacement, then to the A/AAAA of each SRV target; "a" leads directly to
// the A/AAAA of the replacement on DefaultPort.
//
// The result is flattened for Order: Priority is a rank that follows NAPTR
// order, then preference, then SRV priority, so Order tries the most
// preferred servers first; Weight is the SRV weight. Host is the SRV target
// (or the "a" replacement); RFC 7585 also lets the server prove the realm
// itself (subjectAltName naiRealm), which is the TLS layer's business.
//
// Caching, failures and *StaleError behave as in Resolve. A realm without
// matching NAPTR records yields an error wrapping ErrNotFound or ErrNoAnswer:
// no dynamic discovery for that realm.
func (r *Resolver) Discover(ctx context.Context, realm, service string) ([]Target, error) {
	name, ip, err := parseHost(realm)
	if err != nil {
		return nil, err
	}
	if ip.IsValid() {
		return nil, fmt.Errorf("%w: %q is an address, not a realm", ErrInvalidName, realm)
	}
	if service == "" {
		return nil, fmt.Errorf("resolve: discover %s: empty service tag", realm)
	}
	fqdn := name + "."
	q := r.query(ctx, fqdn, dns.TypeNAPTR)
	recs, stale, causes := pick(q, "NAPTR", fqdn)
	naptrs := filterNAPTR(recs, service)
	if len(naptrs) == 0 {
		if len(causes) == 0 {
			causes = append(causes, fmt.Errorf("resolve: NAPTR %s: %w for service %s", name, ErrNoAnswer, service))
		}
		return finish(realm, nil, false, causes)
	}

	type result struct {
		targets []Target
		stale   bool
		causes  []error
	}
	results := make([]result, len(naptrs))
	var wg sync.WaitGroup
	for i, n := range naptrs {
		wg.Go(func() {
			repl := strings.ToLower(dns.Fqdn(n.Replacement))
			var res result
			if strings.EqualFold(n.Flags, "a") {
				addrs, st, cs := r.lookupAddrs(ctx, repl)
				res = result{appendTargets(nil, addrs, DefaultPort, 0, 0, trimDot(repl)), st, cs}
			} else {
				sq := r.query(ctx, repl, dns.TypeSRV)
				srecs, st, cs := pick(sq, "SRV", repl)
				res.stale, res.causes = st, cs
				if len(srecs) > 0 {
					ts, st2, cs2, err := r.expandSRV(ctx, repl, srecs)
					res.targets, res.stale = ts, res.stale || st2
					res.causes = append(res.causes, cs2...)
					if err != nil {
						res.causes = append(res.causes, err)
					}
				}
			}
			results[i] = res
		})
	}
	wg.Wait()

	// Dense ranks over (NAPTR position, SRV priority): equal NAPTR order and
	// preference share a rank so Order spreads over them by weight.
	type key struct{ order, pref, prio uint16 }
	var keys []key
	for i, n := range naptrs {
		for _, t := range results[i].targets {
			keys = append(keys, key{n.Order, n.Preference, t.Priority})
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.pref, b.pref), cmp.Compare(a.prio, b.prio))
	})
	keys = slices.Compact(keys)
	var targets []Target
	for i, n := range naptrs {
		stale = stale || results[i].stale
		causes = append(causes, results[i].causes...)
		for _, t := range results[i].targets {
			t.Priority = uint16(slices.Index(keys, key{n.Order, n.Preference, t.Priority}))
			targets = append(targets, t)
		}
	}
	slices.SortStableFunc(targets, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) })
	return finish(realm, targets, stale, dedupErrors(causes))
}

// pick chooses the records a composite lookup proceeds with: the fresh
// answer, or on failure or an empty answer the last good one (stale).
func pick(q qresult, qtype, fqdn string) (recs []dns.RR, stale bool, causes []error) {
	if q.err == nil && len(q.rrs) > 0 {
		return q.rrs, false, nil
	}
	cause := q.err
	if cause == nil {
		cause = fmt.Errorf("resolve: %s %s: %w", qtype, trimDot(fqdn), ErrNoAnswer)
	}
	return q.last, len(q.last) > 0, []error{cause}
}

// filterNAPTR keeps the S-NAPTR records for service with a terminal "s" or
// "a" flag and no regexp (RFC 3958: S-NAPTR never uses regexps), ordered by
// order, preference, replacement (RFC 3403 §4.1), at most maxNAPTR.
func filterNAPTR(rrs []dns.RR, service string) []*dns.NAPTR {
	var out []*dns.NAPTR
	for _, rr := range rrs {
		n, ok := rr.(*dns.NAPTR)
		if !ok || !strings.EqualFold(n.Service, service) || n.Regexp != "" || n.Replacement == "." || n.Replacement == "" {
			continue
		}
		if !strings.EqualFold(n.Flags, "s") && !strings.EqualFold(n.Flags, "a") {
			continue
		}
		if !validName(strings.ToLower(trimDot(n.Replacement))) {
			continue
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference),
			strings.Compare(strings.ToLower(a.Replacement), strings.ToLower(b.Replacement)))
	})
	if len(out) > maxNAPTR {
		out = out[:maxNAPTR]
	}
	return out
}
