package resolve

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// Defaults applied by New for zero Options fields.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultAttempts    = 2 // rounds over Servers, as resolv.conf "attempts:2" (resolv.conf(5))
	DefaultMinTTL      = 5 * time.Second
	DefaultMaxTTL      = time.Hour
	DefaultNegativeTTL = 30 * time.Second
	DefaultResolvConf  = "/etc/resolv.conf"
	DefaultHostsFile   = "/etc/hosts"
)

// Options configures a Resolver. The zero value is valid: name servers come
// from /etc/resolv.conf and every other field takes its documented default.
type Options struct {
	// Servers are the recursive name servers, "ip:port" or a bare IP (port
	// 53), tried in order on every attempt. Empty: the nameserver lines of
	// ResolvConf, or 127.0.0.1:53 and [::1]:53 when it has none (as glibc).
	Servers []string
	// ResolvConf is read only when Servers is empty. Default /etc/resolv.conf.
	// Its search and ndots options are ignored: upstream names are absolute,
	// because they must also match the upstream's TLS certificate.
	ResolvConf string
	// HostsFile is consulted before DNS for A/AAAA lookups. Default
	// /etc/hosts; a missing file is treated as empty. It is re-read when its
	// size or modification time changes (checked at most every 5s).
	HostsFile string
	// Timeout bounds one query to one server. Default 2s.
	Timeout time.Duration
	// Attempts is the number of rounds over Servers per lookup. Default 2.
	Attempts int
	// MinTTL and MaxTTL clamp record TTLs before caching. Defaults 5s and 1h:
	// a TTL of 0 must not turn every connection into a query, and a huge TTL
	// must not pin an address after the operator moved the service.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long a failed lookup (timeout, SERVFAIL, NXDOMAIN,
	// NODATA) is remembered before the next query. NXDOMAIN/NODATA use the
	// SOA minimum instead when that is shorter (RFC 2308 §5), but never less
	// than MinTTL. Default 30s. Invalidate clears it.
	NegativeTTL time.Duration
	// Now is the clock for TTLs. Default time.Now.
	Now func() time.Time
	// Logger receives one Warn per failed lookup. Nil discards.
	Logger *slog.Logger
}

// Validate checks the fields without touching the file system or the network.
func (o Options) Validate() error {
	var errs []error
	for _, s := range o.Servers {
		if _, err := parseServer(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", o.Timeout}, {"min ttl", o.MinTTL}, {"max ttl", o.MaxTTL}, {"negative ttl", o.NegativeTTL}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("resolve: %s %v is negative", d.name, d.v))
		}
	}
	if o.Attempts < 0 {
		errs = append(errs, fmt.Errorf("resolve: attempts %d is negative", o.Attempts))
	}
	o = o.withDefaults()
	if o.MinTTL > o.MaxTTL {
		errs = append(errs, fmt.Errorf("resolve: min ttl %v exceeds max ttl %v", o.MinTTL, o.MaxTTL))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.HostsFile == "" {
		o.HostsFile = DefaultHostsFile
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	if o.MinTTL == 0 {
		o.MinTTL = DefaultMinTTL
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// parseServer accepts "ip:port", "[v6]:port" or a bare IP, and returns the
// address in the form net.Dial expects.
func parseServer(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("resolve: name server %q: port 0", s)
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf("resolve: name server %q: want ip or ip:port", s)
}

// serversFromResolvConf reads the nameserver lines; a missing or empty file
// yields the loopback defaults glibc uses.
func serversFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return []string{"127.0.0.1:53", "[::1]:53"}, nil
		}
		return nil, fmt.Errorf("resolve: read %s: %w", path, err)
	}
	port := cc.Port
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" {
		port = "53"
	}
	var out []string
	for _, s := range cc.Servers {
		srv, err := parseServer(net.JoinHostPort(s, port))
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: %w", path, err)
		}
		out = append(out, srv)
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:53", "[::1]:53"}
	}
	return out, nil
}
