package eaptls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// DefaultHandshakeTimeout bounds one conversation from Start to
// Success/Failure (docs/local-eap-tls.md: per-conversation timeout, default 30 s).
const DefaultHandshakeTimeout = 30 * time.Second

// extensionEMS is the extended_master_secret extension (RFC 7627 §5.1).
const extensionEMS = 23

// ServerConfig configures the EAP-TLS server side. One ServerConfig is shared
// by every conversation; it must not change after the first NewServer.
type ServerConfig struct {
	// Certificates are the server certificates, each with its full chain
	// (leaf first, intermediates after): the whole chain is sent, since a
	// supplicant only holds the root. ECDSA P-256 is recommended: Go's RSA
	// signing costs several times more CPU.
	Certificates []tls.Certificate
	// GetCertificate, when set, is asked per handshake and wins over
	// Certificates; it allows hot reload.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// MinVersion and MaxVersion bound the TLS version. Only TLS 1.2 and 1.3
	// are allowed. Defaults: 1.2 and 1.3.
	MinVersion, MaxVersion uint16
	// FragmentSize is the maximum TLS data per EAP-TLS packet, in
	// [MinFragmentSize, MaxFragmentSize]. Default DefaultFragmentSize.
	FragmentSize int
	// VerifyPeer decides whether the client certificate chain (leaf first,
	// as sent, not verified by crypto/tls) is acceptable: chain to the
	// organisation CA, EKU, validity, revocation. Required. It runs inside
	// the handshake, before the peer has proven possession of the key with
	// CertificateVerify, so it must not record the peer as authenticated:
	// that is what Succeeded means. Its error is wrapped in
	// ErrPeerCertificate. It must return in bounded time: Step waits for it
	// and neither the deadline nor Close can interrupt it.
	VerifyPeer func(chain []*x509.Certificate) error
	// HandshakeTimeout bounds the whole conversation. Default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Validate checks the configuration before anything is served.
func (c ServerConfig) Validate() error {
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		return fmt.Errorf("%w: no server certificate", ErrConfig)
	}
	for i, crt := range c.Certificates {
		if len(crt.Certificate) == 0 || crt.PrivateKey == nil {
			return fmt.Errorf("%w: certificate %d has no chain or no private key", ErrConfig, i)
		}
	}
	if c.VerifyPeer == nil {
		return fmt.Errorf("%w: no client certificate verifier", ErrConfig)
	}
	return validateCommon(c.MinVersion, c.MaxVersion, c.FragmentSize, c.HandshakeTimeout)
}

func validateVersions(lo, hi uint16) error {
	ok := func(v uint16) bool { return v == 0 || v == tls.VersionTLS12 || v == tls.VersionTLS13 }
	if !ok(lo) || !ok(hi) {
		return fmt.Errorf("%w: tls versions %#x..%#x, only 1.2 and 1.3 are supported", ErrConfig, lo, hi)
	}
	if lo != 0 && hi != 0 && lo > hi {
		return fmt.Errorf("%w: min tls version above max", ErrConfig)
	}
	return nil
}

func validateFragmentSize(n int) error {
	if n != 0 && (n < MinFragmentSize || n > MaxFragmentSize) {
		return fmt.Errorf("%w: fragment size %d outside [%d, %d]", ErrConfig, n, MinFragmentSize, MaxFragmentSize)
	}
	return nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// State is where a conversation stands after Step.
type State int

const (
	// Continue: send the returned EAP-Request and feed the next response.
	Continue State = iota
	// Succeeded: send the returned EAP-Success; Result holds the keys.
	Succeeded
	// Failed: send the returned EAP-Failure; the error says why.
	Failed
)

func (s State) String() string {
	switch s {
	case Continue:
		return "continue"
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// phase is the server's position in RFC 5216 §2.1 (full handshake).
type phase int

const (
	phaseNew      phase = iota
	phaseStarted        // EAP-TLS Start sent, ClientHello (or Nak) due
	phaseRecv           // TLS data or fragments of it due from the peer
	phaseSend           // our flight is going out, an ACK is due
	phaseFinished       // handshake done and flight sent, final ACK due
	phaseDone           // Success or Failure sent
)

// Server is the server side of one EAP-TLS conversation. Packets of a
// conversation arrive one at a time (RFC 3748 §2.1 lock-step); concurrent
// calls are serialised, so Close may come from a reaper goroutine.
type Server struct {
	mu       sync.Mutex // serialises Close with Step
	cfg      *ServerConfig
	cfgErr   error
	frag     int
	timeout  time.Duration
	deadline time.Time

	id       uint8 // Identifier of the last request sent
	phase    phase
	identity string
	reasm    reassembler
	out      *fragmenter
	pipe     *tlsPipe
	tlsDone  bool // the handshake goroutine finished successfully
	res      *Result
	result   *Result // published after Succeeded
}

// NewServer prepares one conversation. A configuration error surfaces from
// Start.
func NewServer(cfg *ServerConfig) *Server {
	s := &Server{cfg: cfg}
	if cfg == nil {
		s.cfgErr = fmt.Errorf("%w: nil server config", ErrConfig)
		return s
	}
	s.cfgErr = cfg.Validate()
	s.frag = orDefault(cfg.FragmentSize, DefaultFragmentSize)
	s.timeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	return s
}

// Start takes the peer's EAP-Response/Identity and returns the EAP-TLS
// Start request (RFC 5216 §2.1.1: S flag, no data), whose Identifier is the
// response's plus one. The conversation's timeout starts now.
func (s *Server) Start(identityResponse []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfgErr != nil {
		return nil, s.cfgErr
	}
	if s.phase != phaseNew {
		return nil, fmt.Errorf("%w: start called twice", ErrOutOfOrder)
	}
	p, err := ParsePacket(identityResponse)
	if err != nil {
		return nil, err
	}
	if p.Code != CodeResponse || p.Type != TypeIdentity {
		return nil, fmt.Errorf("%w: expected eap-response/identity, got %v type %d", ErrMalformed, p.Code, p.Type)
	}
	s.identity = string(p.Data)
	s.deadline = time.Now().Add(s.timeout)
	s.phase = phaseStarted
	s.id = p.Identifier + 1
	return tlsPacket(CodeRequest, s.id, Message{Flags: FlagStart}), nil
}

// Step consumes the peer's next EAP-Response and returns the packet to send.
// On Failed the packet is an EAP-Failure and err says why; on Succeeded it is
// an EAP-Success. After either, the conversation is over and its goroutine
// gone; further Steps return ErrClosed with another EAP-Failure.
func (s *Server) Step(eapResponse []byte) (out []byte, st State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.phase {
	case phaseNew:
		return s.failure(), Failed, fmt.Errorf("%w: step before start", ErrOutOfOrder)
	case phaseDone:
		return s.failure(), Failed, ErrClosed
	}
	out, st, err = s.step(eapResponse)
	if err != nil {
		s.finish()
		return s.failure(), Failed, err
	}
	if st == Succeeded {
		s.finish()
		s.result = s.res
		return Packet{Code: CodeSuccess, Identifier: s.id}.mustMarshal(), Succeeded, nil
	}
	return out, Continue, nil
}

// failure builds the EAP-Failure. RFC 3748 §4.2: it carries the Identifier
// of the response it answers, which is the one of our last request.
func (s *Server) failure() []byte {
	return Packet{Code: CodeFailure, Identifier: s.id}.mustMarshal()
}

func (s *Server) step(b []byte) ([]byte, State, error) {
	if !time.Now().Before(s.deadline) {
		return nil, Failed, fmt.Errorf("%w: after %v", ErrTimeout, s.timeout)
	}
	p, err := ParsePacket(b)
	if err != nil {
		return nil, Failed, err
	}
	if p.Code != CodeResponse {
		return nil, Failed, fmt.Errorf("%w: expected eap-response, got %v", ErrMalformed, p.Code)
	}
	if p.Identifier != s.id {
		// RFC 3748 §4.1 would have us discard it silently; over RADIUS the
		// duplicate is already filtered, so a stale Identifier is a replay or
		// a confused peer.
		return nil, Failed, fmt.Errorf("%w: eap identifier %d, expected %d", ErrOutOfOrder, p.Identifier, s.id)
	}
	switch p.Type {
	case TypeTLS:
	case TypeNak:
		types, err := ParseNak(p.Data)
		if err != nil {
			return nil, Failed, err
		}
		return nil, Failed, &NakError{Types: types}
	case TypeExpanded:
		return nil, Failed, &NakError{}
	default:
		return nil, Failed, fmt.Errorf("%w: eap type %d in response to eap-tls", ErrMalformed, p.Type)
	}
	m, err := ParseMessage(p.Data)
	if err != nil {
		return nil, Failed, err
	}
	if m.Flags&FlagStart != 0 {
		return nil, Failed, fmt.Errorf("%w: start flag from the peer", ErrMalformed)
	}

	switch s.phase {
	case phaseSend:
		if !m.IsACK() {
			return nil, Failed, fmt.Errorf("%w: tls data while sending fragments, ack due", ErrOutOfOrder)
		}
		return s.sendNext(), Continue, nil
	case phaseFinished:
		if !m.IsACK() {
			if len(m.Data) > 0 && m.Data[0] == recordTypeAlert {
				// TLS 1.2 alerts keep their record type (RFC 5246 §6.2.1):
				// the peer rejected our Finished.
				return nil, Failed, fmt.Errorf("%w: after the server finished", ErrPeerAlert)
			}
			return nil, Failed, fmt.Errorf("%w: peer sent tls data after the handshake, ack due", ErrOutOfOrder)
		}
		return nil, Succeeded, nil
	}

	// phaseStarted, phaseRecv: TLS data from the peer.
	msg, err := s.reasm.add(m)
	if err != nil {
		return nil, Failed, err
	}
	if msg == nil {
		// RFC 5216 §2.1.5: acknowledge a fragment with an empty EAP-TLS
		// request.
		s.phase = phaseRecv
		return s.request(Message{}), Continue, nil
	}
	var ev event
	if s.pipe == nil {
		s.pipe = newPipe(s.deadline)
		ev = s.pipe.start(true, msg, s.handshake)
	} else {
		ev = s.pipe.feed(msg)
	}
	if ev.done {
		if ev.err != nil {
			return nil, Failed, ev.err
		}
		s.tlsDone, s.res = true, ev.res
		s.res.OuterIdentity = s.identity
	}
	if len(ev.out) == 0 {
		if s.tlsDone {
			return nil, Succeeded, nil
		}
		// TLS consumed a whole EAP-TLS message and wants more without
		// answering: the peer split a flight without the M flag.
		return nil, Failed, fmt.Errorf("%w: incomplete tls flight from the peer", ErrMalformed)
	}
	s.out = newFragmenter(ev.out, s.frag)
	return s.sendNext(), Continue, nil
}

// sendNext returns the next fragment of our flight as a new request.
func (s *Server) sendNext() []byte {
	m := s.out.next()
	switch {
	case !s.out.done():
		s.phase = phaseSend
	case s.tlsDone:
		s.phase = phaseFinished
	default:
		s.phase = phaseRecv
	}
	return s.request(m)
}

func (s *Server) request(m Message) []byte {
	s.id++
	return tlsPacket(CodeRequest, s.id, m)
}

// handshake runs in the pipe goroutine.
func (s *Server) handshake(c *memConn) event {
	cfg := s.tlsConfig()
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return event{err: classifyHandshakeErr(err)}
	}
	cs := tc.ConnectionState()
	res, err := newResult(&cs, c)
	if err != nil {
		return event{err: err}
	}
	if cs.Version == tls.VersionTLS13 {
		// RFC 9190 §2.1.1: the server commits to sending no more handshake
		// messages with one octet of application data, 0x00.
		if _, err := tc.Write([]byte{0}); err != nil {
			return event{err: fmt.Errorf("%w: writing commitment message: %w", ErrHandshake, err)}
		}
	}
	return event{res: res}
}

func (s *Server) tlsConfig() *tls.Config {
	cfg := s.cfg
	return &tls.Config{
		Certificates:   cfg.Certificates,
		GetCertificate: cfg.GetCertificate,
		MinVersion:     orDefault(cfg.MinVersion, tls.VersionTLS12),
		MaxVersion:     orDefault(cfg.MaxVersion, tls.VersionTLS13),
		// RFC 9190 §2.1.2: no NewSessionTicket unless resumption is
		// implemented; it is not, for TLS 1.2 either.
		SessionTicketsDisabled: true,
		// Request a certificate but enforce its presence in
		// VerifyConnection, so that a missing certificate yields a typed
		// ErrPeerCertificate rather than crypto/tls's untyped error. The
		// effect on the wire is the same as RequireAnyClientCert: the
		// handshake fails with an alert.
		ClientAuth:         tls.RequestClientCert,
		GetConfigForClient: s.checkClientHello,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: peer sent no certificate", ErrPeerCertificate)
			}
			if err := cfg.VerifyPeer(cs.PeerCertificates); err != nil {
				return fmt.Errorf("%w: %w", ErrPeerCertificate, err)
			}
			return nil
		},
	}
}

// checkClientHello rejects, before any expensive work, a peer that will end
// up on TLS 1.2 without Extended Master Secret: crypto/tls would complete the
// handshake and then refuse to export the RFC 5216 keys.
func (s *Server) checkClientHello(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	maxV := orDefault(s.cfg.MaxVersion, tls.VersionTLS13)
	if maxV >= tls.VersionTLS13 && slices.Contains(chi.SupportedVersions, tls.VersionTLS13) {
		return nil, nil
	}
	if !slices.Contains(chi.Extensions, extensionEMS) {
		return nil, fmt.Errorf("%w: enable extended master secret (RFC 7627) or TLS 1.3 on the supplicant", ErrNoEMS)
	}
	return nil, nil
}

// classifyHandshakeErr makes sure every handshake error wraps one sentinel.
func classifyHandshakeErr(err error) error {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return fmt.Errorf("%w: %w", ErrPeerCertificate, err)
	}
	for _, known := range []error{ErrPeerCertificate, ErrNoEMS, ErrTimeout, ErrClosed} {
		if errors.Is(err, known) {
			return err
		}
	}
	// crypto/tls reports a received alert as a net.OpError with this Op.
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		return fmt.Errorf("%w: %w", ErrPeerAlert, err)
	}
	return fmt.Errorf("%w: %w", ErrHandshake, err)
}

// OuterIdentity is the identity from the EAP-Response/Identity given to
// Start, possibly anonymous; available on failure too, for the NAC event.
func (s *Server) OuterIdentity() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity
}

// Result returns the keys and peer chain after Succeeded, else nil.
func (s *Server) Result() *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result
}

// Close ends the conversation and waits for its handshake goroutine to
// exit. Safe at any time, from any goroutine, and idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finish()
}

func (s *Server) finish() {
	s.phase = phaseDone
	if s.pipe != nil {
		s.pipe.close()
	}
	s.out = nil
	s.reasm = reassembler{}
}

// validateCommon checks what client and server configurations share.
func validateCommon(minVersion, maxVersion uint16, fragmentSize int, timeout time.Duration) error {
	if err := validateVersions(minVersion, maxVersion); err != nil {
		return err
	}
	if err := validateFragmentSize(fragmentSize); err != nil {
		return err
	}
	if timeout < 0 {
		return fmt.Errorf("%w: negative handshake timeout %v", ErrConfig, timeout)
	}
	return nil
}
