// Package proxy owns the request path of mxedge: the RADIUS/UDP front door that third-party NAS
// devices talk to, the NAS client table, duplicate detection (RFC 5080 §2.2.2), Message-Authenticator
// policy (RFC 3579, BlastRADIUS), and the pool of RadSec upstreams with failover, load balancing and
// re-keying. Requests no upstream can answer go to a Fallback that the consumer supplies
// (survivability); answers upstream gave are shown to an Observer (cache learning, NAC events).
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"mxedge/proxy/packet"
	"net/netip"
	"slices"
	"sync/atomic"
)

// Secret is a RADIUS shared secret. It never reaches a log.
type Secret []byte

// LogValue redacts the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String redacts the secret.
func (Secret) String() string { return "[redacted]" }

// Client is a NAS allowed to send RADIUS to mxedge, identified by source address.
type Client struct {
	Name   string
	Prefix netip.Prefix // a single address is a /32 or /128
	Secret Secret
	Vendor string // cisco, aruba, juniper, hpe, mist, generic… (drives vendor-aware replies)
	Site   string
	// RequireMessageAuthenticator drops Access-Requests without Message-Authenticator
	// (BlastRADIUS, CVE-2024-3596). Default on.
	RequireMessageAuthenticator bool
	// LimitProxyState drops Access-Requests that carry Proxy-State but no Message-Authenticator, as
	// FreeRADIUS limit_proxy_state does: a NAS never sends Proxy-State, an attacker does.
	LimitProxyState bool

	stats *NASStats
	maKey *packet.MAKey // Secret's key schedule (NewClientTable); nil: computed from Secret
}

// Stats returns the client's counters (shared across reloads for the same name).
func (c *Client) Stats() *NASStats { return c.stats }

// MAKey returns the key schedule of the client's Secret (packet.NewMAKey), for signing local
// answers with Builder.FinishKey; nil for a Client that is not from a ClientTable.
func (c *Client) MAKey() *packet.MAKey { return c.maKey }

// NASStats counts what one NAS sent; the usual first misconfigurations show up here.
type NASStats struct {
	Requests         atomic.Uint64
	Responses        atomic.Uint64
	Duplicates       atomic.Uint64
	BadAuthenticator atomic.Uint64 // wrong secret: bad Message-Authenticator or accounting authenticator
	MissingMA        atomic.Uint64
	Malformed        atomic.Uint64
	LastSeen         atomic.Int64 // unix nanos
}

// ErrClientOverlap is returned when two clients have the same prefix.
var ErrClientOverlap = errors.New("proxy: two clients with the same address")

// ClientTable finds the client for a source address, most specific prefix first. It is immutable;
// a reload builds a new one.
type ClientTable struct {
	bits    []int // distinct prefix lengths, longest first, per family
	byExact map[netip.Prefix]*Client
	all     []*Client
}

// NewClientTable builds the table. stats carries counters over from the previous table by name.
func NewClientTable(clients []Client, stats func(name string) *NASStats) (*ClientTable, error) {
	t := &ClientTable{byExact: make(map[netip.Prefix]*Client, len(clients))}
	seen := map[int]bool{}
	for i := range clients {
		c := clients[i]
		p := c.Prefix.Masked()
		c.Prefix = p
		if !p.IsValid() {
			return nil, fmt.Errorf("proxy: client %q: invalid address", c.Name)
		}
		if _, dup := t.byExact[p]; dup {
			return nil, fmt.Errorf("%w: %s (%s)", ErrClientOverlap, p, c.Name)
		}
		if stats != nil {
			c.stats = stats(c.Name)
		}
		if c.stats == nil {
			c.stats = new(NASStats)
		}
		c.maKey = packet.NewMAKey(c.Secret)
		cp := &c
		t.byExact[p] = cp
		t.all = append(t.all, cp)
		key := p.Bits()
		if p.Addr().Is6() {
			key += 1000
		}
		if !seen[key] {
			seen[key] = true
			t.bits = append(t.bits, key)
		}
	}
	slices.SortFunc(t.bits, func(a, b int) int { return b%1000 - a%1000 })
	return t, nil
}

// Lookup returns the client whose prefix contains addr with the longest match.
func (t *ClientTable) Lookup(addr netip.Addr) *Client {
	addr = addr.Unmap()
	v6 := addr.Is6()
	for _, key := range t.bits {
		if (key >= 1000) != v6 {
			continue
		}
		p, err := addr.Prefix(key % 1000)
		if err != nil {
			continue
		}
		if c, ok := t.byExact[p]; ok {
			return c
		}
	}
	return nil
}

// All returns the clients in configuration order.
func (t *ClientTable) All() []*Client { return t.all }
