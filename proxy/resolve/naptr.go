package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// RFC 7585 service tags (§2.1) and the port an "a" record's servers listen on (RFC 6614 §2.1).
const (
	// ServiceAuthTLS is the registered tag for RADIUS/TLS authentication (RFC 7585 §2.1).
	ServiceAuthTLS = "aaa+auth:radius.tls.tcp"
	// ServiceEduroamTLS is the tag eduroam publishes for its RadSec servers.
	ServiceEduroamTLS = "x-eduroam:radius.tls"
	// DiscoveryPort is the RadSec port for targets of a NAPTR with flag "a", which carry no port.
	DiscoveryPort = 2083
	// maxNAPTR caps how many matching NAPTR records are followed (like maxSRVTargets).
	maxNAPTR = 8
)

// Discover finds the RadSec servers of an NAI realm by RFC 7585 dynamic discovery: the NAPTR
// RRset of the realm (§2.4: the realm itself is the owner name), the records whose service tag
// is one of services (compared case-insensitively) and whose flag is "s" (the replacement is an
// SRV name) or "a" (the replacement is a host, on DiscoveryPort), in NAPTR order and preference;
// then SRV and A/AAAA as Resolve does. Records with a regexp are skipped: RFC 7585 §2.3 uses only
// the replacement field.
//
// Every lookup is cached for its own TTL and remembered for NegativeTTL when it fails (the
// negative caching RFC 7585 §2.4 asks for), so the first request for a realm that does not exist
// costs one query and the next ones none until the failure expires. Targets are ordered with the
// NAPTR rank first and the SRV priority second, in Priority, so Order keeps both.
//
// A Target's Host is the DNS name the server was found under. It is not the identity the
// certificate must prove: that is the realm (RFC 7585 §2.2, the NAIRealm SAN), which the caller
// checks.
func (r *Resolver) Discover(ctx context.Context, realm string, services []string) ([]Target, error) {
	name, ip, err := parseHost(realm)
	if err != nil {
		return nil, err
	}
	if ip.IsValid() {
		return nil, fmt.Errorf("%w: %q is an address, not a realm", ErrInvalidName, realm)
	}
	fqdn := name + "."
	q := r.query(ctx, fqdn, dns.TypeNAPTR)
	recs, stale := q.rrs, false
	var causes []error
	if q.err != nil || len(q.rrs) == 0 {
		cause := q.err
		if cause == nil {
			cause = fmt.Errorf("resolve: NAPTR %s: %w", name, ErrNoAnswer)
		}
		causes = append(causes, cause)
		recs, stale = q.last, true
	}
	if len(recs) == 0 {
		return finish(name, nil, false, causes)
	}
	naptrs := matchNAPTR(recs, services)
	if len(naptrs) == 0 {
		return nil, fmt.Errorf("resolve: NAPTR %s: none for %s: %w", name, strings.Join(services, ", "), ErrServiceUnavailable)
	}
	var targets []Target
	for rank, n := range naptrs {
		repl := strings.ToLower(dns.Fqdn(n.Replacement))
		var ts []Target
		var st bool
		var cs []error
		if strings.EqualFold(n.Flags, "s") {
			sq := r.query(ctx, repl, dns.TypeSRV)
			srvs := sq.rrs
			if sq.err != nil || len(srvs) == 0 {
				if sq.err != nil {
					cs = append(cs, sq.err)
				} else {
					cs = append(cs, fmt.Errorf("resolve: SRV %s: %w", trimDot(repl), ErrNoAnswer))
				}
				srvs, st = sq.last, true
			}
			if len(srvs) > 0 {
				var s2 bool
				var c2 []error
				ts, s2, c2, err = r.expandSRV(ctx, repl, srvs)
				if err != nil {
					cs = append(cs, err) // this NAPTR's service is "decidedly not available"; try the next
				}
				st, cs = st || s2, append(cs, c2...)
			}
		} else {
			addrs, s2, c2 := r.lookupAddrs(ctx, repl)
			ts, st, cs = appendTargets(nil, addrs, DiscoveryPort, 0, 0, trimDot(repl)), s2, c2
		}
		for i := range ts {
			// NAPTR rank in the high byte, SRV priority (capped) in the low one.
			ts[i].Priority = uint16(rank)<<8 | min(ts[i].Priority, 0xff)
		}
		targets = append(targets, ts...)
		stale = stale || st
		causes = append(causes, cs...)
	}
	return finish(name, targets, stale, dedupErrors(causes))
}

// matchNAPTR returns the NAPTR records of recs that discovery follows, in processing order
// (RFC 3403 §4.1: Order, then Preference), at most maxNAPTR, without duplicates.
func matchNAPTR(recs []dns.RR, services []string) []*dns.NAPTR {
	var out []*dns.NAPTR
	for _, rr := range recs {
		n, ok := rr.(*dns.NAPTR)
		if !ok || n.Regexp != "" || n.Replacement == "." || n.Replacement == "" {
			continue
		}
		if !strings.EqualFold(n.Flags, "s") && !strings.EqualFold(n.Flags, "a") {
			continue
		}
		if !slices.ContainsFunc(services, func(s string) bool { return strings.EqualFold(s, n.Service) }) {
			continue
		}
		out = append(out, n)
	}
	slices.SortStableFunc(out, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference),
			strings.Compare(strings.ToLower(a.Replacement), strings.ToLower(b.Replacement)))
	})
	out = slices.CompactFunc(out, func(a, b *dns.NAPTR) bool {
		return strings.EqualFold(a.Replacement, b.Replacement) && strings.EqualFold(a.Flags, b.Flags)
	})
	if len(out) > maxNAPTR {
		out = out[:maxNAPTR]
	}
	return out
}

// InvalidateRealm makes the next Discover of realm ask again (a reconnect after a failure): it
// expires the NAPTR answer, the SRV answers it led to and their targets' addresses, including
// remembered failures. Last good answers are kept, as Invalidate does.
func (r *Resolver) InvalidateRealm(realm string) {
	name, ip, err := parseHost(realm)
	if err != nil || ip.IsValid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[qkey{name + ".", dns.TypeNAPTR}]
	if e == nil {
		return
	}
	e.valid = false
	for _, rr := range slices.Concat(e.rrs, e.last) {
		n, ok := rr.(*dns.NAPTR)
		if !ok {
			continue
		}
		repl := strings.ToLower(dns.Fqdn(n.Replacement))
		r.expireSRV(repl)
		r.expireAddrs(repl)
	}
}

// IsNotFound reports whether err says the realm or service does not exist in DNS (as opposed to
// DNS failing to answer), the distinction a caller logs.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrServiceUnavailable)
}
