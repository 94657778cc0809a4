package survival

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
	"mxedge/survivability/eaptls"
)

// Microsoft vendor attributes carrying the MSK (RFC 2548 §2.4.2, §2.4.3).
const (
	msMPPESendKey = 16
	msMPPERecvKey = 17
	maxEAPChunk   = 253 // RFC 3579 §3.1: EAP-Message split into attributes of at most 253 octets
	maxRounds     = 64  // a full EAP-TLS conversation takes about 6–10 round trips
)

// ErrRejected reports an Access-Reject.
var ErrRejected = errors.New("survival: access-reject")

// EAPConn is a NAS that runs EAP-TLS conversations over RADIUS/UDP, one at a time, on its own
// socket. The supplicant side is eaptls.Client.
type EAPConn struct {
	conn    *net.UDPConn
	secret  []byte
	timeout time.Duration
	id      uint8
	buf     []byte
	out     []byte
}

// DialEAP opens a NAS socket to a RADIUS server. timeout bounds each round trip.
func DialEAP(addr, secret string, timeout time.Duration) (*EAPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("survival: eap: %w", err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("survival: eap: %w", err)
	}
	return &EAPConn{conn: c, secret: []byte(secret), timeout: timeout, buf: make([]byte, packet.MaxLen)}, nil
}

// Close closes the socket.
func (e *EAPConn) Close() error { return e.conn.Close() }

// Authenticate runs one EAP-TLS conversation with cfg as the supplicant: EAP-Response/Identity,
// then the Access-Challenge loop (State echoed, RFC 2865 §5.24; EAP-Message split and joined,
// RFC 3579 §3.1; Message-Authenticator on every request, RFC 3579 §3.2), until Access-Accept or
// Access-Reject. On Accept it checks that MS-MPPE-Recv-Key and MS-MPPE-Send-Key decrypt to the
// MSK the supplicant derived (RFC 5216 §2.3 / RFC 9190 §2.3, RFC 2548 §2.4). It returns the
// number of round trips.
func (e *EAPConn) Authenticate(cfg *eaptls.ClientConfig, mac string) (int, error) {
	cl := eaptls.NewClient(cfg)
	defer cl.Close()
	eap := cl.Identity(1)
	var state []byte
	for round := 1; round <= maxRounds; round++ {
		var auth [packet.AuthLen]byte
		_, _ = rand.Read(auth[:])
		resp, err := e.exchange(auth[:], cfg.Identity, mac, eap, state)
		if err != nil {
			return round, err
		}
		msg := joinEAP(resp)
		switch resp.Code() {
		case packet.CodeAccessChallenge:
			st, ok := resp.Attr(packet.AttrState)
			if !ok {
				return round, errors.New("survival: eap: access-challenge without State")
			}
			state = append(state[:0], st...)
			next, done, err := cl.Step(msg)
			if err != nil {
				return round, fmt.Errorf("survival: eap: round %d: %w", round, err)
			}
			if done {
				return round, fmt.Errorf("survival: eap: round %d: conversation ended on an access-challenge", round)
			}
			eap = next
		case packet.CodeAccessAccept:
			if _, _, err := cl.Step(msg); err != nil {
				return round, fmt.Errorf("survival: eap: access-accept: %w", err)
			}
			res := cl.Result()
			if res == nil {
				return round, errors.New("survival: eap: access-accept without EAP-Success")
			}
			return round, e.checkMPPE(resp, auth[:], res.MSK[:])
		case packet.CodeAccessReject:
			rm, _ := resp.Attr(packet.AttrReplyMessage)
			return round, fmt.Errorf("%w: %q", ErrRejected, rm)
		default:
			return round, fmt.Errorf("survival: eap: unexpected %v", resp.Code())
		}
	}
	return maxRounds, fmt.Errorf("survival: eap: no decision after %d round trips", maxRounds)
}

// exchange sends one Access-Request and returns its verified answer.
func (e *EAPConn) exchange(auth []byte, identity, mac string, eap, state []byte) (packet.Packet, error) {
	e.id++
	b := packet.New(e.out[:0], packet.CodeAccessRequest, e.id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, identity)
	b.AddString(packet.AttrCallingStationID, mac)
	b.AddUint32(packet.AttrNASPortType, 15) // Ethernet (RFC 2875)
	b.AddUint32(packet.AttrServiceType, 2)  // Framed
	for len(eap) > 0 {
		n := min(len(eap), maxEAPChunk)
		b.Add(packet.AttrEAPMessage, eap[:n])
		eap = eap[n:]
	}
	if state != nil {
		b.Add(packet.AttrState, state)
	}
	req, err := b.Finish(e.secret, nil)
	if err != nil {
		return nil, fmt.Errorf("survival: eap: build: %w", err)
	}
	e.out = req[:0]
	if _, err := e.conn.Write(req); err != nil {
		return nil, fmt.Errorf("survival: eap: send: %w", err)
	}
	deadline := time.Now().Add(e.timeout)
	_ = e.conn.SetReadDeadline(deadline)
	for {
		n, err := e.conn.Read(e.buf)
		if err != nil {
			return nil, fmt.Errorf("survival: eap: no answer: %w", err)
		}
		resp, err := packet.Parse(e.buf[:n])
		if err != nil || resp.ID() != e.id || !packet.CheckResponseAuthenticator(resp, auth, e.secret) {
			continue // a stale or forged datagram: keep waiting for ours
		}
		if packet.CheckResponseMA(resp, auth, e.secret) == packet.MAInvalid {
			return nil, errors.New("survival: eap: answer with a bad message-authenticator")
		}
		if resp.Has(packet.AttrEAPMessage) && packet.CheckResponseMA(resp, auth, e.secret) != packet.MAValid {
			return nil, errors.New("survival: eap: EAP-Message without message-authenticator (RFC 3579 §3.2)")
		}
		return resp, nil
	}
}

// joinEAP concatenates the EAP-Message attributes in order (RFC 3579 §3.1).
func joinEAP(p packet.Packet) []byte {
	var out []byte
	it := p.Attrs()
	for {
		t, v, ok := it.Next()
		if !ok {
			return out
		}
		if t == packet.AttrEAPMessage {
			out = append(out, v...)
		}
	}
}

// checkMPPE verifies that the Accept's MS-MPPE-Recv-Key is MSK[0:32] and MS-MPPE-Send-Key
// MSK[32:64] (RFC 3079 §3.3 / RFC 5216 §2.3 key naming as the authenticator sees it).
func (e *EAPConn) checkMPPE(resp packet.Packet, reqAuth []byte, msk []byte) error {
	var recv, send []byte
	var derr error
	it := resp.Attrs()
	for {
		t, v, ok := it.Next()
		if !ok {
			break
		}
		if t != packet.AttrVendorSpecific {
			continue
		}
		packet.SplitVSA(v, func(s packet.VSA) {
			if s.Vendor != packet.VendorMicrosoft || (s.Type != msMPPERecvKey && s.Type != msMPPESendKey) {
				return
			}
			k, err := packet.DecryptSalted(nil, s.Value, e.secret, reqAuth)
			if err != nil {
				derr = err
				return
			}
			if s.Type == msMPPERecvKey {
				recv = k
			} else {
				send = k
			}
		})
	}
	if derr != nil {
		return fmt.Errorf("survival: eap: mppe key: %w", derr)
	}
	if recv == nil || send == nil {
		return errors.New("survival: eap: access-accept without MS-MPPE keys")
	}
	if !bytes.Equal(recv, msk[:32]) || !bytes.Equal(send, msk[32:64]) {
		return errors.New("survival: eap: MS-MPPE keys do not match the MSK")
	}
	return nil
}

// EAPLoadOptions configure a closed-loop EAP-TLS load: Concurrency NASes, each running one
// conversation after the other, until Duration or Max conversations.
type EAPLoadOptions struct {
	Addr, Secret string               // required
	Client       *eaptls.ClientConfig // the supplicant; required
	Concurrency  int                  // default 8
	Duration     time.Duration        // required
	Max          int                  // default 100,000
	Timeout      time.Duration        // per round trip; default 2 s
}

// EAPResult is what an EAP-TLS load saw.
type EAPResult struct {
	OK, Failed int
	Rounds     int // RADIUS round trips of the successful conversations
	Elapsed    time.Duration
	P50, P99   time.Duration // per successful conversation
	FirstErr   error
}

// Rate is successful authentications per second.
func (r EAPResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// LoadEAP runs the closed-loop EAP-TLS load.
func LoadEAP(ctx context.Context, o EAPLoadOptions) (EAPResult, error) {
	if o.Addr == "" || o.Secret == "" || o.Client == nil || o.Duration <= 0 {
		return EAPResult{}, errors.New("survival: eap load: Addr, Secret, Client and Duration are required")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	conns := make([]*EAPConn, o.Concurrency)
	for i := range conns {
		c, err := DialEAP(o.Addr, o.Secret, o.Timeout)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return EAPResult{}, err
		}
		conns[i] = c
	}
	var (
		started atomic.Int64
		mu      sync.Mutex
		res     EAPResult
		lats    []time.Duration
		wg      sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(o.Duration)
	for w, c := range conns {
		wg.Go(func() {
			defer c.Close()
			for k := 0; ctx.Err() == nil && time.Now().Before(end) && started.Add(1) <= int64(o.Max); k++ {
				mac := MAC(2, uint32(w<<16|k&0xffff))
				t0 := time.Now()
				rounds, err := c.Authenticate(o.Client, mac)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
				} else {
					res.OK++
					res.Rounds += rounds
					lats = append(lats, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(lats)
	res.P50, res.P99 = Percentile(lats, 0.5), Percentile(lats, 0.99)
	return res, ctx.Err()
}
