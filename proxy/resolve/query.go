package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxChase bounds CNAME chains, in one response and across re-queries
	// (RFC 1034 §3.6.2 leaves the limit to the resolver; 8 is what stub
	// resolvers commonly allow).
	maxChase = 8
	// ednsSize is the EDNS(0) UDP payload advertised (RFC 6891 §6.2.5; 1232
	// is the DNS Flag Day 2020 value that avoids IP fragmentation). Larger
	// answers come back truncated and are re-asked over TCP.
	ednsSize = 1232
)

// answer is the outcome of one successful exchange (NOERROR or NXDOMAIN).
type answer struct {
	rrs []dns.RR      // records of the asked type owned by the end of the CNAME chain
	ttl time.Duration // smallest TTL over the chain and rrs; for a negative answer the RFC 2308 §5 TTL
	soa bool          // a negative answer carried an SOA, so ttl is meaningful
}

// fetch asks the name servers for (name, qtype), following CNAMEs. name is
// fully qualified and lower case. NXDOMAIN returns ErrNotFound with the
// negative TTL in answer; NODATA returns no error and no records.
func (r *Resolver) fetch(ctx context.Context, name string, qtype uint16) (answer, error) {
	qname := name
	chain := time.Duration(-1) // smallest CNAME TTL seen across re-queries
	for range maxChase {
		resp, err := r.exchangeAll(ctx, qname, qtype)
		if err != nil {
			return answer{}, fmt.Errorf("resolve: %s %s: %w", dns.TypeToString[qtype], trimDot(name), err)
		}
		ans, end, cnameTTL := interpret(resp, qname, qtype)
		if cnameTTL >= 0 && (chain < 0 || cnameTTL < chain) {
			chain = cnameTTL
		}
		if chain >= 0 && len(ans.rrs) > 0 && chain < ans.ttl {
			ans.ttl = chain // an answer lives no longer than the aliases leading to it
		}
		if resp.Rcode == dns.RcodeNameError {
			return ans, fmt.Errorf("resolve: %s %s: %w", dns.TypeToString[qtype], trimDot(name), ErrNotFound)
		}
		if len(ans.rrs) > 0 || end == qname || ans.soa || qtype == dns.TypeCNAME {
			return ans, nil
		}
		// The server stopped at a CNAME without the target's data and without
		// saying NODATA (allowed for a non-recursive answer, RFC 1034 §4.3.2):
		// ask for the target.
		qname = end
	}
	return answer{}, fmt.Errorf("resolve: %s %s: %w: cname chain longer than %d", dns.TypeToString[qtype], trimDot(name), ErrServerFailure, maxChase)
}

// interpret extracts the records for qname/qtype from a NOERROR or NXDOMAIN
// response, following the CNAME chain inside the answer section. It returns
// the name the chain ends at and the smallest CNAME TTL (-1 without CNAMEs).
func interpret(resp *dns.Msg, qname string, qtype uint16) (answer, string, time.Duration) {
	chain := time.Duration(-1)
	cur := qname
	for range maxChase {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(dns.Fqdn(c.Target))
				if d := time.Duration(c.Hdr.Ttl) * time.Second; chain < 0 || d < chain {
					chain = d
				}
				break
			}
		}
		if next == "" || next == cur {
			break
		}
		cur = next
	}
	var ans answer
	minTTL := uint32(1<<32 - 1)
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype == qtype && h.Class == dns.ClassINET && strings.EqualFold(h.Name, cur) {
			ans.rrs = append(ans.rrs, rr)
			minTTL = min(minTTL, h.Ttl)
		}
	}
	if len(ans.rrs) > 0 {
		ans.ttl = time.Duration(minTTL) * time.Second
		return ans, cur, chain
	}
	// Negative answer: RFC 2308 §5, the TTL is the smaller of the SOA's own
	// TTL and its MINIMUM field.
	ans.ttl = -1
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ans.ttl = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			ans.soa = true
			break
		}
	}
	return ans, cur, chain
}

// exchangeAll runs the resolv.conf algorithm: Attempts rounds, each trying
// the servers in order. NOERROR and NXDOMAIN end the search; SERVFAIL,
// REFUSED, other RCODEs, malformed replies and timeouts move on to the next
// server. The error of the last server tried is returned.
func (r *Resolver) exchangeAll(ctx context.Context, qname string, qtype uint16) (*dns.Msg, error) {
	var last error
	for range r.o.Attempts {
		for _, server := range r.servers {
			if ctx.Err() != nil {
				return nil, ctxError(ctx, last)
			}
			m := new(dns.Msg)
			m.SetQuestion(qname, qtype)
			m.RecursionDesired = true
			m.SetEdns0(ednsSize, false)
			resp, err := r.exchange(ctx, server, m)
			if err != nil && ctx.Err() != nil {
				return nil, ctxError(ctx, nil)
			}
			if err != nil {
				last = transportError(server, err)
				continue
			}
			if err := checkReply(m, resp); err != nil {
				last = fmt.Errorf("%w: %s: %w", ErrServerFailure, server, err)
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, nil
			default:
				last = fmt.Errorf("%w: %s from %s", ErrServerFailure, dns.RcodeToString[resp.Rcode], server)
			}
		}
	}
	return nil, last
}

var errBadReply = errors.New("reply does not match the question")

// checkReply rejects a reply that is not for our question (RFC 5452 §9.1:
// match ID, question name, type and class); miekg/dns checks the ID.
func checkReply(q, resp *dns.Msg) error {
	if !resp.Response || len(resp.Question) != 1 {
		return errBadReply
	}
	a, b := q.Question[0], resp.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return errBadReply
	}
	return nil
}

// exchange sends one query to one server over UDP and repeats it over TCP
// when the reply is truncated (RFC 1035 §4.2.1, RFC 7766 §5).
func (r *Resolver) exchange(ctx context.Context, server string, m *dns.Msg) (*dns.Msg, error) {
	resp, err := r.exchangeNet(ctx, "udp", server, m)
	if resp != nil && resp.Truncated {
		return r.exchangeNet(ctx, "tcp", server, m)
	}
	return resp, err
}

func (r *Resolver) exchangeNet(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.o.Timeout}
	conn, err := c.DialContext(qctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// miekg/dns honours the context deadline but not cancellation; closing
	// the socket makes a cancelled Resolve return at once.
	stop := context.AfterFunc(qctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(qctx, m, conn)
	if err != nil && resp != nil && resp.Truncated {
		// A truncated UDP reply may be cut mid-record and fail to unpack;
		// the TC bit is still valid and all that matters.
		return resp, nil
	}
	if err != nil {
		if ctx.Err() == nil && qctx.Err() != nil {
			return nil, fmt.Errorf("%w after %v", os.ErrDeadlineExceeded, r.o.Timeout)
		}
		return nil, err
	}
	return resp, nil
}

// transportError classifies a failed exchange: timeouts wrap ErrTimeout,
// anything else (ICMP port unreachable, connection refused) ErrServerFailure.
func transportError(server string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: no answer from %s", ErrTimeout, server)
	}
	return fmt.Errorf("%w: %s: %w", ErrServerFailure, server, err)
}

func trimDot(name string) string { return strings.TrimSuffix(name, ".") }

// ctxError reports the caller's context ending the lookup; a deadline counts
// as a timeout so the caller's budget and Options.Timeout read the same.
func ctxError(ctx context.Context, last error) error {
	err := context.Cause(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if last != nil {
		return fmt.Errorf("%w (last: %w)", err, last)
	}
	return err
}
