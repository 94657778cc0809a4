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

	"mxedge/pki"
	"mxedge/survivability"
	"mxedge/survivability/eaptls"
)

// Defaults.
const (
	DefaultFragmentSize        = eaptls.DefaultFragmentSize
	DefaultConversationTimeout = 30 * time.Second
	DefaultMaxConversations    = 1000
	DefaultMaxPerNAS           = 256
	DefaultFirstStepTimeout    = 5 * time.Second
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

// Authorizer is the local authorization decision the handler asks once a certificate is verified
// (survivability.Authorizer implements it).
type Authorizer interface {
	Authorize(p survivability.Proof, vendor, site string) survivability.Verdict
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
	// FragmentSize is the most TLS data per EAP-TLS packet, lowered for a NAS whose Framed-MTU
	// cannot carry it. Default: as much as the NAS's Framed-MTU allows, up to 1390 octets (the
	// Access-Challenge then fits a 1500-byte IP packet), or DefaultFragmentSize (1000) from a NAS
	// that sends no Framed-MTU.
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
	// FirstStepTimeout bounds the wait from the EAP-TLS Start to the peer's answer (its TLS
	// ClientHello), which a real supplicant sends within milliseconds, so conversations opened by
	// a flood of EAP-Response/Identity messages do not hold a slot for long.
	// Default DefaultFirstStepTimeout; capped at ConversationTimeout.
	FirstStepTimeout time.Duration
	// MaxConversations caps the conversations in progress in all, MaxConversationsPerNAS those of
	// one NAS. At a cap a new conversation displaces the oldest one still waiting for its first
	// step, and is rejected only when none is. Defaults DefaultMaxConversations and
	// DefaultMaxPerNAS.
	MaxConversations       int
	MaxConversationsPerNAS int
	// Authorizer decides, once a certificate is verified, what the client gets: the cached
	// authorization of that certificate identity, the default 802.1X VLAN, or a refusal
	// (survivability.Authorizer, shared with the MAB path). Required.
	Authorizer Authorizer
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
	if o.FirstStepTimeout < 0 {
		return fmt.Errorf("%w: negative first step timeout %v", ErrConfig, o.FirstStepTimeout)
	}
	if o.MaxConversations < 0 {
		return fmt.Errorf("%w: negative max conversations %d", ErrConfig, o.MaxConversations)
	}
	if o.MaxConversationsPerNAS < 0 {
		return fmt.Errorf("%w: negative max conversations per NAS %d", ErrConfig, o.MaxConversationsPerNAS)
	}
	sc := o.serverConfig()
	sc.VerifyPeer = func(chain []*x509.Certificate) error { return nil }
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if len(o.IdentityOrder) == 0 {
		o.IdentityOrder = defaultIdentityOrder()
	}
	if o.ConversationTimeout == 0 {
		o.ConversationTimeout = DefaultConversationTimeout
	}
	if o.FirstStepTimeout == 0 {
		o.FirstStepTimeout = DefaultFirstStepTimeout
	}
	o.FirstStepTimeout = min(o.FirstStepTimeout, o.ConversationTimeout)
	if o.MaxConversations == 0 {
		o.MaxConversations = DefaultMaxConversations
	}
	if o.MaxConversationsPerNAS == 0 {
		o.MaxConversationsPerNAS = DefaultMaxPerNAS
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
