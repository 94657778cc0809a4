// Package resolve owns upstream name resolution for mxedge: it turns the
// configured RadSec upstream (an IP literal, a host name, or a name with an
// SRV RRset under _radsec._tcp) into the list of addresses to connect to,
// using github.com/miekg/dns against the configured recursive name servers.
//
// Decisions, and why:
//
//   - Our own stub resolver instead of net.Resolver: we need the TTLs (the
//     cloud is served from several points of presence and moves between
//     them), the RCODE (a SERVFAIL must not be confused with NXDOMAIN in the
//     logs) and the SRV priority/weight fields in one place. /etc/hosts is
//     still honoured: names listed there are answered from it without DNS,
//     as the system resolver would (hosts(5)).
//   - Every (name, type) query is cached for its TTL clamped to
//     [MinTTL, MaxTTL]; failures and empty answers for NegativeTTL, or the
//     shorter SOA minimum (RFC 2308 §5). Each query also remembers its last
//     non-empty answer, which survives failures and Invalidate: when DNS
//     fails, Resolve returns that answer with a *StaleError, so an edge that
//     loses its resolver keeps forwarding to the addresses it knew.
//   - Concurrent lookups of the same query share one exchange; A and AAAA
//     are asked concurrently. A caller whose context ends does not poison
//     the cache: its failure is not remembered and waiters retry.
//   - Queries go over UDP with EDNS(0) 1232 and are repeated over TCP when
//     truncated; servers are tried in order, Attempts rounds (resolv.conf
//     semantics). Names are absolute: no search list, because the name is
//     also what the upstream's certificate must match.
//   - SRV: RFC 2782 ordering (priority, then weight) is applied by Order, not
//     by Resolve, so that each caller can spread its connections with its
//     own index. A lone "." target means "no service" (ErrServiceUnavailable);
//     a name without SRV records falls back to its A/AAAA with the default
//     port, as RFC 2782 says.
package resolve
