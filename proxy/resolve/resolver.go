package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// SRVPrefix is prepended to the upstream name for RadSec SRV lookups:
	// RFC 2782 "_Service._Proto.Name" with the service name RadSec
	// deployments (eduroam, radsecproxy) publish.
	SRVPrefix = "_radsec._tcp."
	// maxSRVTargets caps how many SRV records are expanded, so a hostile or
	// broken zone cannot fan one Resolve out into hundreds of queries.
	maxSRVTargets = 16
	// forgetAfter drops cache entries nobody asked for in this long (an
	// upstream removed from the configuration, an SRV target that left the
	// RRset); sweepEvery bounds how often the cache is scanned.
	forgetAfter = 24 * time.Hour
	sweepEvery  = 10 * time.Minute
)

// Target is one address to connect to.
type Target struct {
	Addr netip.AddrPort
	// Priority and Weight come from the SRV record (RFC 2782); 0 for targets
	// from A/AAAA or an IP literal.
	// Lower Priority is tried first; see Order.
	Priority, Weight uint16
	// Host is the name the server certificate must match (RFC 6614 §2.3,
	// RFC 6125): the SRV target, or the configured name in lower case
	// without a trailing dot (an IP literal in canonical form).
	Host string
}

// Resolver resolves upstream names with a TTL cache that remembers the last
// good answer for every query. It is safe for concurrent use.
type Resolver struct {
	o       Options
	servers []string
	hosts   *hostsFile
	log     *slog.Logger

	mu        sync.Mutex
	entries   map[qkey]*entry
	lastSweep time.Time
}

type qkey struct {
	name  string // fully qualified, lower case
	qtype uint16
}

// entry caches one (name, type) query.
type entry struct {
	valid   bool      // rrs/err hold the outcome of the last fetch until expires
	rrs     []dns.RR  // last fetch's records (empty for NODATA or failure)
	err     error     // last fetch's failure, remembered for NegativeTTL
	expires time.Time //
	last    []dns.RR  // last non-empty answer: survives failures and Invalidate
	used    time.Time // for forgetAfter
	flight  *flight   // a fetch in progress; others wait for it
}

// flight lets concurrent callers share one fetch.
type flight struct {
	done    chan struct{}
	res     qresult
	aborted bool // the fetching caller's context ended: waiters retry with theirs
}

// qresult is what a query hands to the composition logic.
type qresult struct {
	rrs     []dns.RR // fresh records when err == nil
	err     error    // the lookup failed (possibly remembered from an earlier fetch)
	last    []dns.RR // last non-empty answer, whatever happened now
	fetched bool     // this call asked the network (for logging once per failure)
}

// New validates o, applies defaults and reads the name servers from
// ResolvConf when o.Servers is empty. It opens no socket.
func New(o Options) (*Resolver, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	r := &Resolver{o: o, log: o.Logger, hosts: &hostsFile{path: o.HostsFile}, entries: make(map[qkey]*entry)}
	if len(o.Servers) == 0 {
		s, err := serversFromResolvConf(o.ResolvConf)
		if err != nil {
			return nil, err
		}
		r.servers = s
	} else {
		for _, s := range o.Servers {
			p, _ := parseServer(s) // Validate checked it
			r.servers = append(r.servers, p)
		}
	}
	return r, nil
}

// Servers returns the name servers in use, "ip:port", in query order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Resolve returns the targets for an upstream.
//
// host may be an IP literal (optionally in brackets): it is returned as-is
// without DNS. With srv=false the A and AAAA records of host are looked up
// concurrently (names in the hosts file are answered from it) and every
// address gets port. With srv=true the SRV RRset of _radsec._tcp.<host> is
// looked up, ordered by priority (RFC 2782), and the A/AAAA of each target
// resolved; if the name has no SRV records (NXDOMAIN or NODATA) and port is
// not 0, Resolve falls back to the A/AAAA of host with port, as RFC 2782
// prescribes; port 0 disables that fallback.
//
// Answers are cached for their TTL, clamped to [MinTTL, MaxTTL]. Failures
// (timeout, SERVFAIL, NXDOMAIN, no records) are remembered for NegativeTTL.
// When a lookup fails and an earlier one succeeded, the earlier answer is
// used and Resolve returns the targets together with a *StaleError wrapping
// the cause; the caller keeps using the targets. With no usable answer at all
// Resolve returns nil and the error.
//
// Addresses of one name are returned sorted, IPv6 and IPv4 interleaved
// (RFC 8305 §4); use Order to pick the connection order.
func (r *Resolver) Resolve(ctx context.Context, host string, port uint16, srv bool) ([]Target, error) {
	name, ip, err := parseHost(host)
	if err != nil {
		return nil, err
	}
	if ip.IsValid() {
		if port == 0 {
			return nil, fmt.Errorf("resolve: %s: port 0", host)
		}
		return []Target{{Addr: netip.AddrPortFrom(ip, port), Host: name}}, nil
	}
	if srv {
		return r.resolveSRV(ctx, host, name, port)
	}
	if port == 0 {
		return nil, fmt.Errorf("resolve: %s: port 0", host)
	}
	addrs, stale, causes := r.lookupAddrs(ctx, name)
	return finish(host, appendTargets(nil, addrs, port, 0, 0, name), stale, causes)
}

// Invalidate forces the next Resolve of host to query again (used when a
// connection to the upstream is re-established): it expires the cached A,
// AAAA and SRV answers for host, and those reached from them (SRV targets),
// including remembered failures. The last good answers are kept, so a failing
// re-resolution still yields them.
func (r *Resolver) Invalidate(host string) {
	name, ip, err := parseHost(host)
	if err != nil || ip.IsValid() {
		return
	}
	r.hosts.invalidate()
	r.mu.Lock()
	defer r.mu.Unlock()
	fqdn := name + "."
	r.expireAddrs(fqdn)
	r.expireSRV(SRVPrefix + fqdn)
}

// expireAddrs and expireSRV are called with r.mu held.
func (r *Resolver) expireAddrs(fqdn string) {
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		if e := r.entries[qkey{fqdn, qt}]; e != nil {
			e.valid = false
		}
	}
}

func (r *Resolver) expireSRV(fqdn string) {
	e := r.entries[qkey{fqdn, dns.TypeSRV}]
	if e == nil {
		return
	}
	e.valid = false
	for _, rr := range slices.Concat(e.rrs, e.last) {
		if s, ok := rr.(*dns.SRV); ok {
			r.expireAddrs(strings.ToLower(dns.Fqdn(s.Target)))
		}
	}
}

// finish turns the composed targets into Resolve's result.
func finish(host string, targets []Target, stale bool, causes []error) ([]Target, error) {
	cause := errors.Join(causes...)
	if len(causes) == 1 {
		cause = causes[0]
	}
	switch {
	case len(targets) == 0 && cause == nil:
		return nil, fmt.Errorf("resolve: %s: %w", host, ErrNoAnswer)
	case len(targets) == 0:
		return nil, cause
	case stale || cause != nil:
		return targets, &StaleError{Host: host, Cause: cause}
	}
	return targets, nil
}

func (r *Resolver) resolveSRV(ctx context.Context, host, name string, port uint16) ([]Target, error) {
	srvName := SRVPrefix + name + "."
	q := r.query(ctx, srvName, dns.TypeSRV)
	var (
		recs   []dns.RR
		stale  bool
		causes []error
	)
	switch {
	case q.err == nil && len(q.rrs) > 0:
		recs = q.rrs
	case q.err == nil || errors.Is(q.err, ErrNotFound):
		// No SRV published. RFC 2782 ("Usage rules"): fall back to the
		// address records of the name itself, with the default port.
		if port != 0 {
			addrs, st, cs := r.lookupAddrs(ctx, name)
			if len(addrs) > 0 {
				return finish(host, appendTargets(nil, addrs, port, 0, 0, name), st, cs)
			}
			causes = append(causes, cs...)
		}
		if q.err != nil {
			causes = append(causes, q.err)
		} else {
			causes = append(causes, fmt.Errorf("resolve: SRV %s: %w", trimDot(srvName), ErrNoAnswer))
		}
		recs, stale = q.last, true
	default:
		causes = append(causes, q.err)
		recs, stale = q.last, true
	}
	if len(recs) == 0 {
		return finish(host, nil, false, causes)
	}

	targets, st, cs, err := r.expandSRV(ctx, srvName, recs)
	if err != nil {
		return nil, err
	}
	return finish(host, targets, stale || st, dedupErrors(append(causes, cs...)))
}

// expandSRV orders an SRV RRset and resolves each target's addresses
// (distinct targets once, concurrently). Targets that resolve to nothing are
// left out and their failures returned in causes.
func (r *Resolver) expandSRV(ctx context.Context, srvName string, recs []dns.RR) (targets []Target, stale bool, causes []error, err error) {
	srvs := sortSRV(recs)
	if len(srvs) == 1 && srvs[0].Target == "." {
		// RFC 2782: "A Target of '.' means that the service is decidedly not
		// available at this domain." Authoritative: no fallback.
		return nil, false, nil, fmt.Errorf("resolve: SRV %s: %w", trimDot(srvName), ErrServiceUnavailable)
	}
	srvs = slices.DeleteFunc(srvs, func(s *dns.SRV) bool { return s.Target == "." })
	if len(srvs) > maxSRVTargets {
		srvs = srvs[:maxSRVTargets]
	}

	type res struct {
		addrs  []netip.Addr
		stale  bool
		causes []error
	}
	var names []string
	for _, s := range srvs {
		if !slices.Contains(names, s.Target) {
			names = append(names, s.Target)
		}
	}
	results := make([]res, len(names))
	var wg sync.WaitGroup
	for i, t := range names {
		wg.Go(func() {
			a, st, cs := r.lookupAddrs(ctx, t)
			results[i] = res{a, st, cs}
		})
	}
	wg.Wait()

	for _, s := range srvs {
		res := results[slices.Index(names, s.Target)]
		stale = stale || res.stale
		causes = append(causes, res.causes...)
		targets = appendTargets(targets, res.addrs, s.Port, s.Priority, s.Weight, trimDot(s.Target))
	}
	return targets, stale, causes, nil
}

// sortSRV returns the SRV records with lower-case fully qualified targets,
// ordered by priority, then weight (heaviest first), target and port, with
// duplicates removed. The order is deterministic so Order's rotation is
// stable across resolutions of the same RRset.
func sortSRV(rrs []dns.RR) []*dns.SRV {
	var out []*dns.SRV
	for _, rr := range rrs {
		s, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		c := *s
		c.Target = strings.ToLower(dns.Fqdn(c.Target))
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *dns.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight),
			strings.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	return slices.CompactFunc(out, func(a, b *dns.SRV) bool {
		return a.Priority == b.Priority && a.Weight == b.Weight && a.Target == b.Target && a.Port == b.Port
	})
}

func appendTargets(dst []Target, addrs []netip.Addr, port, prio, weight uint16, host string) []Target {
	for _, a := range addrs {
		dst = append(dst, Target{Addr: netip.AddrPortFrom(a, port), Priority: prio, Weight: weight, Host: host})
	}
	return dst
}

// lookupAddrs resolves a name (fully qualified or not) to addresses: the
// hosts file first, otherwise A and AAAA concurrently. A family whose lookup
// fails contributes its last good answer. If nothing at all is left, the last
// good answers of both families are used, even where the fresh answer was
// NODATA: "the name has no address now" is a failure for an upstream.
func (r *Resolver) lookupAddrs(ctx context.Context, name string) (addrs []netip.Addr, stale bool, causes []error) {
	host := trimDot(name)
	if a := r.hosts.lookup(host, r.o.Now()); len(a) > 0 {
		return interleave(a), false, nil
	}
	fqdn := host + "."
	types := [2]uint16{dns.TypeAAAA, dns.TypeA}
	var res [2]qresult
	hits := r.cached(fqdn, types[:], res[:])
	if !hits {
		var wg sync.WaitGroup
		for i, qt := range types {
			wg.Go(func() { res[i] = r.query(ctx, fqdn, qt) })
		}
		wg.Wait()
	}

	var fetched bool
	for _, q := range res {
		fetched = fetched || q.fetched
		if q.err == nil {
			addrs = appendAddrs(addrs, q.rrs)
			continue
		}
		causes = append(causes, q.err)
		if len(q.last) > 0 {
			addrs = appendAddrs(addrs, q.last)
			stale = true
		}
	}
	if len(addrs) == 0 {
		for _, q := range res {
			if q.err == nil && len(q.last) > 0 {
				addrs = appendAddrs(addrs, q.last)
				stale = true
			}
		}
		if len(causes) == 0 {
			err := fmt.Errorf("resolve: %s: %w", host, ErrNoAnswer)
			causes = append(causes, err)
			if fetched {
				r.logFailure(host, err, stale)
			}
		}
	}
	return interleave(addrs), stale, causes
}

func appendAddrs(dst []netip.Addr, rrs []dns.RR) []netip.Addr {
	for _, rr := range rrs {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA.To16())
		}
		if a.IsValid() {
			dst = append(dst, a.Unmap())
		}
	}
	return dst
}

// interleave sorts and de-duplicates addresses and alternates the families,
// IPv6 first (RFC 8305 §4), so a rotation over the list alternates too.
func interleave(addrs []netip.Addr) []netip.Addr {
	var v6, v4 []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	slices.SortFunc(v6, netip.Addr.Compare)
	slices.SortFunc(v4, netip.Addr.Compare)
	v6, v4 = slices.Compact(v6), slices.Compact(v4)
	out := make([]netip.Addr, 0, len(v6)+len(v4))
	for i := range max(len(v6), len(v4)) {
		if i < len(v6) {
			out = append(out, v6[i])
		}
		if i < len(v4) {
			out = append(out, v4[i])
		}
	}
	return out
}

// dedupErrors drops repeated errors (the same remembered failure reached
// through two SRV records) so the joined cause stays readable.
func dedupErrors(errs []error) []error {
	var out []error
	seen := make(map[string]bool)
	for _, e := range errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			out = append(out, e)
		}
	}
	return out
}

// cached fills res with the cached outcomes of name for each type and
// reports whether all were fresh: the common path needs no goroutines.
func (r *Resolver) cached(name string, types []uint16, res []qresult) bool {
	now := r.o.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, qt := range types {
		e := r.entries[qkey{name, qt}]
		if e == nil || !e.valid || !now.Before(e.expires) {
			return false
		}
		e.used = now
		res[i] = qresult{rrs: e.rrs, err: e.err, last: e.last}
	}
	return true
}

// query returns the cached outcome of (name, qtype) or fetches it; concurrent
// callers share one fetch.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) qresult {
	k := qkey{name, qtype}
	for {
		now := r.o.Now()
		r.mu.Lock()
		r.sweep(now)
		e := r.entries[k]
		if e == nil {
			e = &entry{}
			r.entries[k] = e
		}
		e.used = now
		if e.valid && now.Before(e.expires) {
			res := qresult{rrs: e.rrs, err: e.err, last: e.last}
			r.mu.Unlock()
			return res
		}
		if f := e.flight; f != nil {
			r.mu.Unlock()
			select {
			case <-f.done:
				if f.aborted && ctx.Err() == nil {
					continue // the fetching caller gave up; fetch with our context
				}
				res := f.res
				res.fetched = false
				return res
			case <-ctx.Done():
				r.mu.Lock()
				last := e.last
				r.mu.Unlock()
				err := fmt.Errorf("resolve: %s %s: %w", dns.TypeToString[qtype], trimDot(name), ctxError(ctx, nil))
				return qresult{err: err, last: last}
			}
		}
		f := &flight{done: make(chan struct{})}
		e.flight = f
		r.mu.Unlock()

		ans, err := r.fetch(ctx, name, qtype)

		now = r.o.Now()
		r.mu.Lock()
		f.aborted = err != nil && ctx.Err() != nil
		if !f.aborted {
			// A failure caused by the caller's own deadline or cancellation
			// says nothing about DNS: it is not remembered.
			e.valid, e.rrs, e.err = true, ans.rrs, err
			switch {
			case err == nil && len(ans.rrs) > 0:
				e.expires = now.Add(r.positiveTTL(ans.ttl))
				e.last = ans.rrs
			default:
				e.expires = now.Add(r.negativeTTL(ans))
			}
		}
		f.res = qresult{rrs: ans.rrs, err: err, last: e.last, fetched: true}
		if err != nil {
			f.res.rrs = nil
		}
		e.flight = nil
		hadLast := len(e.last) > 0
		r.mu.Unlock()
		close(f.done)
		if err != nil && !f.aborted {
			r.logFailure(trimDot(name), err, hadLast)
		}
		return f.res
	}
}

func (r *Resolver) logFailure(name string, err error, stale bool) {
	if stale {
		r.log.Warn("dns lookup failed, using last good answer", "upstream", name, "reason", reason(err), "err", err)
		return
	}
	r.log.Warn("dns lookup failed", "upstream", name, "reason", reason(err), "err", err)
}

func (r *Resolver) positiveTTL(ttl time.Duration) time.Duration {
	return max(r.o.MinTTL, min(r.o.MaxTTL, ttl))
}

// negativeTTL: how long a failure or empty answer is remembered. RFC 2308 §5
// lets the SOA shorten it; MinTTL keeps a zero SOA minimum from turning every
// connection into a query.
func (r *Resolver) negativeTTL(ans answer) time.Duration {
	d := r.o.NegativeTTL
	if ans.soa && ans.ttl < d {
		d = max(ans.ttl, min(r.o.MinTTL, d))
	}
	return d
}

// sweep forgets entries nobody asked for in forgetAfter. Called with r.mu held.
func (r *Resolver) sweep(now time.Time) {
	if now.Sub(r.lastSweep) < sweepEvery {
		return
	}
	r.lastSweep = now
	for k, e := range r.entries {
		if e.flight != nil {
			continue
		}
		// An unused entry goes after forgetAfter; one that holds nothing but an expired
		// failure goes at once: nothing is lost, and realms from requests (Discover) cannot
		// pile up failures for a day.
		if now.Sub(e.used) > forgetAfter || len(e.last) == 0 && !now.Before(e.expires) {
			delete(r.entries, k)
		}
	}
}

// parseHost splits an upstream host into a lower-case name without trailing
// dot, or an IP literal ("[v6]" accepted).
func parseHost(host string) (string, netip.Addr, error) {
	h := host
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.String(), a, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if !validName(name) {
		return "", netip.Addr{}, fmt.Errorf("%w: %q", ErrInvalidName, host)
	}
	return name, netip.Addr{}, nil
}

// validName accepts host names (RFC 1123 §2.1 letters, digits, hyphens) plus
// '_' for service labels, labels of 1..63 octets, 253 octets in all
// (RFC 1035 §2.3.4).
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
