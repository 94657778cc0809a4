package eaptls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"time"
)

// ClientConfig configures the peer (supplicant) side, used by
// `mxedge test auth` and the benchmark load generator.
type ClientConfig struct {
	// Identity is the outer identity for EAP-Response/Identity; it may be
	// anonymous ("anonymous@example.org"), the certificate identifies.
	Identity string
	// Certificates is the client certificate with its chain. Empty sends
	// no certificate (useful only to test rejection).
	Certificates []tls.Certificate
	// RootCAs verifies the server chain. Required.
	RootCAs *x509.CertPool
	// ServerName, when set, must match the server certificate. When empty
	// only the chain is verified, as wpa_supplicant does with ca_cert and no
	// domain_match.
	ServerName string
	// MinVersion and MaxVersion: TLS 1.2 and 1.3 only. Defaults: 1.2, 1.3.
	MinVersion, MaxVersion uint16
	// FragmentSize is the maximum TLS data per EAP-TLS packet. Default
	// DefaultFragmentSize.
	FragmentSize int
	// HandshakeTimeout bounds the conversation from the EAP-TLS Start.
	// Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// CurvePreferences are the key exchanges offered, most preferred first (nil: Go's default,
	// which includes the X25519MLKEM768 post-quantum hybrid that supplicants built on OpenSSL 3.0
	// do not offer).
	CurvePreferences []tls.CurveID
	// KeyLogWriter, for debugging only, receives TLS secrets in NSS key log
	// format (see tls.Config.KeyLogWriter) so a capture can be decrypted.
	KeyLogWriter io.Writer
}

// Validate checks the configuration.
func (c ClientConfig) Validate() error {
	if c.RootCAs == nil {
		return fmt.Errorf("%w: no root CAs to verify the server", ErrConfig)
	}
	return validateCommon(c.MinVersion, c.MaxVersion, c.FragmentSize, c.HandshakeTimeout)
}

// Client is the peer side of one EAP-TLS conversation. Not safe for
// concurrent use.
type Client struct {
	cfg     *ClientConfig
	cfgErr  error
	frag    int
	timeout time.Duration

	deadline time.Time
	phase    phase
	reasm    reassembler
	out      *fragmenter
	pipe     *tlsPipe
	tlsDone  bool
	res      *Result
	result   *Result

	// The last request and our response, to answer a retransmitted request
	// (same Identifier, same bytes) without advancing (RFC 3748 §4.1).
	lastReq, lastResp []byte
}

// NewClient prepares one conversation. A configuration error surfaces from
// the first Step.
func NewClient(cfg *ClientConfig) *Client {
	c := &Client{cfg: cfg}
	if cfg == nil {
		c.cfgErr = fmt.Errorf("%w: nil client config", ErrConfig)
		return c
	}
	c.cfgErr = cfg.Validate()
	c.frag = orDefault(cfg.FragmentSize, DefaultFragmentSize)
	c.timeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	return c
}

// Identity returns the EAP-Response/Identity answering the
// EAP-Request/Identity with Identifier reqID.
func (c *Client) Identity(reqID uint8) []byte {
	id := ""
	if c.cfg != nil {
		id = c.cfg.Identity
	}
	return Packet{Code: CodeResponse, Identifier: reqID, Type: TypeIdentity, Data: []byte(id)}.mustMarshal()
}

// Step consumes the authenticator's next EAP packet and returns the response
// to send. done is true once EAP-Success (err nil, Result set) or
// EAP-Failure (err wraps ErrFailure) arrived, or on any error; the
// conversation is then over.
func (c *Client) Step(eapRequest []byte) (resp []byte, done bool, err error) {
	if c.cfgErr != nil {
		return nil, true, c.cfgErr
	}
	if c.phase == phaseDone {
		return nil, true, ErrClosed
	}
	if c.lastResp != nil && bytes.Equal(eapRequest, c.lastReq) {
		return c.lastResp, false, nil
	}
	resp, done, err = c.step(eapRequest)
	if err != nil || done {
		c.finish()
		return nil, true, err
	}
	c.lastReq = append(c.lastReq[:0], eapRequest...)
	c.lastResp = resp
	return resp, false, nil
}

func (c *Client) step(b []byte) ([]byte, bool, error) {
	p, err := ParsePacket(b)
	if err != nil {
		return nil, true, err
	}
	switch p.Code {
	case CodeSuccess:
		if c.phase != phaseFinished {
			return nil, true, fmt.Errorf("%w: eap-success before the tls handshake completed", ErrOutOfOrder)
		}
		c.result = c.res
		return nil, true, nil
	case CodeFailure:
		return nil, true, ErrFailure
	case CodeResponse:
		return nil, true, fmt.Errorf("%w: eap-response sent to the peer", ErrMalformed)
	}
	switch p.Type {
	case TypeIdentity:
		return c.Identity(p.Identifier), false, nil
	case TypeNotification:
		// RFC 3748 §5.2: acknowledge with an empty Notification response.
		return Packet{Code: CodeResponse, Identifier: p.Identifier, Type: TypeNotification}.mustMarshal(), false, nil
	case TypeTLS:
		return c.stepTLS(p)
	default:
		// RFC 3748 §5.3.1: propose EAP-TLS instead.
		nak := AppendNak(nil, []Type{TypeTLS})
		return Packet{Code: CodeResponse, Identifier: p.Identifier, Type: TypeNak, Data: nak}.mustMarshal(), false, nil
	}
}

func (c *Client) stepTLS(p Packet) ([]byte, bool, error) {
	m, err := ParseMessage(p.Data)
	if err != nil {
		return nil, true, err
	}
	if c.phase != phaseNew && !time.Now().Before(c.deadline) {
		return nil, true, fmt.Errorf("%w: after %v", ErrTimeout, c.timeout)
	}
	id := p.Identifier
	if m.Flags&FlagStart != 0 {
		if c.phase != phaseNew {
			return nil, true, fmt.Errorf("%w: second eap-tls start", ErrOutOfOrder)
		}
		c.deadline = time.Now().Add(c.timeout)
		c.pipe = newPipe(c.deadline)
		ev := c.pipe.start(false, nil, c.handshake)
		return c.afterEvent(id, ev)
	}
	switch c.phase {
	case phaseNew:
		return nil, true, fmt.Errorf("%w: eap-tls data before start", ErrOutOfOrder)
	case phaseSend:
		if !m.IsACK() {
			return nil, true, fmt.Errorf("%w: tls data while sending fragments, ack due", ErrOutOfOrder)
		}
		return c.sendNext(id), false, nil
	case phaseFinished:
		return nil, true, fmt.Errorf("%w: eap-tls request after the handshake completed", ErrOutOfOrder)
	}
	msg, err := c.reasm.add(m)
	if err != nil {
		return nil, true, err
	}
	if msg == nil {
		return c.response(id, Message{}), false, nil // RFC 5216 §2.1.5 ACK
	}
	return c.afterEvent(id, c.pipe.feed(msg))
}

func (c *Client) afterEvent(id uint8, ev event) ([]byte, bool, error) {
	if ev.done {
		if ev.err != nil {
			return nil, true, ev.err
		}
		c.tlsDone, c.res = true, ev.res
		c.res.OuterIdentity = c.cfg.Identity
	}
	if len(ev.out) == 0 {
		if c.tlsDone {
			// RFC 5216 §2.1.1 (server Finished) and RFC 9190 §2.1.1
			// (commitment message): acknowledge, then EAP-Success is due.
			c.phase = phaseFinished
		} else {
			c.phase = phaseRecv
		}
		return c.response(id, Message{}), false, nil
	}
	c.out = newFragmenter(ev.out, c.frag)
	return c.sendNext(id), false, nil
}

func (c *Client) sendNext(id uint8) []byte {
	m := c.out.next()
	switch {
	case !c.out.done():
		c.phase = phaseSend
	case c.tlsDone:
		c.phase = phaseFinished
	default:
		c.phase = phaseRecv
	}
	return c.response(id, m)
}

func (c *Client) response(id uint8, m Message) []byte {
	return tlsPacket(CodeResponse, id, m)
}

// handshake runs in the pipe goroutine.
func (c *Client) handshake(mc *memConn) event {
	tc := tls.Client(mc, c.tlsConfig())
	if err := tc.Handshake(); err != nil {
		return event{err: classifyHandshakeErr(err)}
	}
	cs := tc.ConnectionState()
	if cs.Version == tls.VersionTLS13 {
		// RFC 9190 §2.1.1: wait for the server's commitment message, one
		// octet 0x00 of application data.
		var buf [16]byte
		n, err := tc.Read(buf[:])
		if err != nil {
			return event{err: fmt.Errorf("%w: %w", ErrCommitment, classifyHandshakeErr(err))}
		}
		if n != 1 || buf[0] != 0 {
			return event{err: fmt.Errorf("%w: got %d bytes of application data", ErrCommitment, n)}
		}
	}
	res, err := newResult(&cs, mc)
	if err != nil {
		return event{err: err}
	}
	return event{res: res}
}

func (c *Client) tlsConfig() *tls.Config {
	cfg := c.cfg
	tc := &tls.Config{
		Certificates:     cfg.Certificates,
		RootCAs:          cfg.RootCAs,
		ServerName:       cfg.ServerName,
		MinVersion:       orDefault(cfg.MinVersion, tls.VersionTLS12),
		MaxVersion:       orDefault(cfg.MaxVersion, tls.VersionTLS13),
		KeyLogWriter:     cfg.KeyLogWriter,
		CurvePreferences: cfg.CurvePreferences,
	}
	if cfg.ServerName == "" {
		// Verify the chain ourselves, without a host name.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: server sent no certificate", ErrPeerCertificate)
			}
			inter := x509.NewCertPool()
			for _, crt := range cs.PeerCertificates[1:] {
				inter.AddCert(crt)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         cfg.RootCAs,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("%w: %w", ErrPeerCertificate, err)
			}
			return nil
		}
	}
	return tc
}

// Result returns the keys and server chain after a successful conversation,
// else nil.
func (c *Client) Result() *Result { return c.result }

// Close ends the conversation and waits for its handshake goroutine to exit.
// Idempotent.
func (c *Client) Close() { c.finish() }

func (c *Client) finish() {
	c.phase = phaseDone
	if c.pipe != nil {
		c.pipe.close()
	}
	c.out = nil
	c.reasm = reassembler{}
}
