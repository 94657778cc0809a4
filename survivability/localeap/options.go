package localeap

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"mxedge/cache"
	"mxedge/pki"
	"mxedge/survivability/eaptls"
)

// Defaults.
const (
	DefaultFragmentSize        = eaptls.DefaultFragmentSize
	DefaultConversationTimeout = 30 * time.Second
	DefaultMaxConversations    = 1000
	DefaultClockSkew           = 5 * time.Minute
)

// Identity sources for Options.IdentityOrder.
const (
	IdentityCN    = "cn"    // subject commonName
	IdentityUPN   = "upn"   // SAN otherName UPN (Microsoft, 1.3.6.1.4.1.311.20.2.3)
	IdentityEmail = "email" // SAN rfc822Name
	IdentityDNS   = "dns"   // SAN dNSName
)

// defaultIdentityOrder is the order certificate names are tried for the authorization identity
// (a function: no package-level mutable state).
func defaultIdentityOrder() []string {
	return []string{IdentityCN, IdentityUPN, IdentityEmail, IdentityDNS}
}

// CacheReader is what local EAP-TLS needs from the client cache; *cache.Store implements it.
type CacheReader interface {
	Lookup(identity, mac string) (cache.Record, bool, error)
}

// LookupFunc is a CacheReader from a function that cannot fail (a fixed policy, tests).
type LookupFunc func(identity, mac string) (cache.Record, bool)

// Lookup implements CacheReader.
func (f LookupFunc) Lookup(identity, mac string) (cache.Record, bool, error) {
	rec, ok := f(identity, mac)
	return rec, ok, nil
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("localeap: invalid configuration")

// Options configure the local EAP-TLS server.
type Options struct {
	// Certificates are the server certificates with their full chains (leaf first); GetCertificate,
	// when set, wins and allows hot reload. One of them is required. ECDSA P-256 is recommended.
	Certificates   []tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// MinVersion and MaxVersion: TLS 1.2 and 1.3 only. Defaults 1.2 and 1.3.
	MinVersion, MaxVersion uint16
	// FragmentSize is the TLS data per EAP-TLS packet. Default DefaultFragmentSize (1000).
	FragmentSize int
	// Verify is the client certificate policy: Roots is the organisation CA bundle (required),
	// Usage is forced to pki.UsageClient and RequireSHA256 to true, ClockSkew defaults to
	// DefaultClockSkew, Now to Options.Now, the key strength minimums to pki's defaults (RSA 2048,
	// ECDSA P-256). Revocation, when set, is the CRL/OCSP checker (its Policy decides soft or
	// hard fail); it must answer in bounded time, as it runs inside the TLS handshake.
	Verify pki.VerifyOptions
	// IdentityOrder lists where the authorization identity comes from, first match wins:
	// "cn", "upn", "email", "dns". Default in that order. The outer EAP identity (possibly
	// anonymous) is never used for authorization.
	IdentityOrder []string
	// ConversationTimeout bounds one conversation from EAP-Response/Identity to the end.
	// Default DefaultConversationTimeout.
	ConversationTimeout time.Duration
	// MaxConversations caps the conversations in progress; a new one beyond it is rejected.
	// Default DefaultMaxConversations.
	MaxConversations int
	// Cache finds the cached authorization for a certificate identity and a canonical MAC
	// (*cache.Store). nil: every lookup misses.
	Cache CacheReader
	// DefaultVLAN is the 802.1X VLAN (ID or name) given on a cache miss unless FailClosed.
	// Empty: an Access-Accept without VLAN attributes (the port's configured VLAN).
	DefaultVLAN string
	// FailClosed rejects authenticated clients the cache does not know (failmode: closed).
	FailClosed bool
	// Site, when set, gives DefaultVLAN and FailClosed per site (proxy.Client.Site) instead
	// (survivability.Sites).
	Site func(site string) (defaultVLAN string, failClosed bool)
	// VendorReply says how to express DefaultVLAN for a NAS vendor (proxy.Client.Vendor). nil, or
	// a nil result: the RFC 3580 §3.31 triplet Tunnel-Type=VLAN, Tunnel-Medium-Type=IEEE-802,
	// Tunnel-Private-Group-ID=vlan.
	VendorReply func(vendor, vlan string) []cache.Attr
	// Events receives one NAC event per finished conversation. It runs on the request path and
	// must not block. nil: none.
	Events func(Event)
	// Now is the clock for conversation expiry and certificate validity. Default time.Now.
	Now func() time.Time
	// Rand is the source of State values and MPPE salts. Default crypto/rand.
	Rand io.Reader
	// Logger: nil discards.
	Logger *slog.Logger
}

// Validate checks the options before anything is served.
func (o Options) Validate() error {
	if len(o.Certificates) == 0 && o.GetCertificate == nil {
		return fmt.Errorf("%w: no server certificate", ErrConfig)
	}
	if o.Verify.Roots == nil {
		return fmt.Errorf("%w: no organisation CA (verify roots)", ErrConfig)
	}
	if err := o.Verify.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, id := range o.IdentityOrder {
		if !slices.Contains(defaultIdentityOrder(), id) {
			return fmt.Errorf("%w: identity source %q, want one of %v", ErrConfig, id, defaultIdentityOrder())
		}
	}
	if o.ConversationTimeout < 0 {
		return fmt.Errorf("%w: negative conversation timeout %v", ErrConfig, o.ConversationTimeout)
	}
	if o.MaxConversations < 0 {
		return fmt.Errorf("%w: negative max conversations %d", ErrConfig, o.MaxConversations)
	}
	if len(o.DefaultVLAN) > 253 {
		return fmt.Errorf("%w: default vlan longer than 253 octets", ErrConfig)
	}
	sc := o.serverConfig()
	sc.VerifyPeer = func(chain []*x509.Certificate) error { return nil }
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.FragmentSize == 0 {
		o.FragmentSize = DefaultFragmentSize
	}
	if len(o.IdentityOrder) == 0 {
		o.IdentityOrder = defaultIdentityOrder()
	}
	if o.ConversationTimeout == 0 {
		o.ConversationTimeout = DefaultConversationTimeout
	}
	if o.MaxConversations == 0 {
		o.MaxConversations = DefaultMaxConversations
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// clientAuth EKU and SHA-256 or better are not optional for EAP-TLS clients (docs/local-eap-tls.md).
	o.Verify.Usage = pki.UsageClient
	o.Verify.RequireSHA256 = true
	if o.Verify.ClockSkew == 0 {
		o.Verify.ClockSkew = DefaultClockSkew
	}
	if o.Verify.Now == nil {
		o.Verify.Now = o.Now
	}
	return o
}

// serverConfig is the eaptls configuration shared by every conversation, without VerifyPeer
// (set per conversation so the event can name the certificate that failed).
func (o Options) serverConfig() eaptls.ServerConfig {
	return eaptls.ServerConfig{
		Certificates:     o.Certificates,
		GetCertificate:   o.GetCertificate,
		MinVersion:       o.MinVersion,
		MaxVersion:       o.MaxVersion,
		FragmentSize:     o.FragmentSize,
		HandshakeTimeout: o.ConversationTimeout,
	}
}
