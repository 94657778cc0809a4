package identity

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"mxedge/proxy/packet"
	"mxedge/survivability/spool"
)

// AccountingOptions configure a radius-accounting sink: every acknowledged Accounting-Request of
// the sessions it selects is copied to Address, re-signed with Secret (RFC 2866 §3), with
// Acct-Delay-Time grown by the time it waited (RFC 2866 §5.2), as FreeRADIUS's
// copy-acct-to-home-server does. Consumers such as Fortinet RSSO read exactly this stream.
type AccountingOptions struct {
	Address string // host:port (UDP)
	Secret  []byte
	// Timeout is how long one attempt waits for the Accounting-Response; the request is sent
	// again once at half of it. Default 2s.
	Timeout time.Duration
}

// Validate checks the options.
func (o *AccountingOptions) Validate() error {
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return fmt.Errorf("identity: radius-accounting address %q: %w", o.Address, err)
	}
	if len(o.Secret) == 0 {
		return errors.New("identity: radius-accounting: secret required")
	}
	return nil
}

// errUndeliverable marks a record no attempt can deliver (it does not parse or would exceed 4096
// octets once re-signed): removed, counted as dropped, logged.
var errUndeliverable = errors.New("identity: radius-accounting: record cannot be forwarded")

// acctRecord is the queued form of one Accounting-Request: [received unix ns][uvarint NAS name
// length][NAS name][packet].
type acctRecord struct {
	received time.Time
	nas      string
	pkt      []byte
}

func (r acctRecord) encode() []byte {
	b := make([]byte, 8, 8+binary.MaxVarintLen64+len(r.nas)+len(r.pkt))
	binary.BigEndian.PutUint64(b, uint64(r.received.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(r.nas)))
	b = append(b, r.nas...)
	return append(b, r.pkt...)
}

func decodeAcct(b []byte) (acctRecord, error) {
	if len(b) < 9 {
		return acctRecord{}, ErrQueueRecord
	}
	r := acctRecord{received: time.Unix(0, int64(binary.BigEndian.Uint64(b)))}
	n, w := binary.Uvarint(b[8:])
	if w <= 0 || n > uint64(len(b)-8-w) || w != uvarintLen(n) {
		return acctRecord{}, ErrQueueRecord
	}
	off := 8 + w
	r.nas = string(b[off : off+int(n)])
	r.pkt = b[off+int(n):]
	return r, nil
}

type acctDriver struct {
	o      AccountingOptions
	secret func(nas string) []byte // the NAS's secret, which hides its encrypted attributes
	now    func() time.Time
	drops  func(n int)
	conn   *net.UDPConn
	id     uint8
}

func newAcct(o AccountingOptions, secret func(string) []byte, now func() time.Time, drops func(int)) *acctDriver {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	var b [1]byte
	_, _ = rand.Read(b[:])
	return &acctDriver{o: o, secret: secret, now: now, drops: drops, id: b[0]}
}

// pending is one request of a wave.
type pending struct {
	it   item
	pkt  packet.Packet
	done bool
}

// maxWave bounds the requests outstanding at once: each needs its own identifier (RFC 2865 §3).
const maxWave = 128

// deliver sends the batch in waves: a wave holds at most one record per session, so a session's
// records reach the server in order; the next wave starts when every record of this one is
// answered. A wave with an unanswered record ends the attempt: its answered records count as
// delivered, the rest wait for the retry.
func (d *acctDriver) deliver(ctx context.Context, items []item) ([]item, error) {
	if d.conn == nil {
		raddr, err := net.ResolveUDPAddr("udp", d.o.Address)
		if err != nil {
			return nil, fmt.Errorf("identity: radius-accounting: %w", err)
		}
		if d.conn, err = net.DialUDP("udp", nil, raddr); err != nil {
			return nil, fmt.Errorf("identity: radius-accounting: %w", err)
		}
	}
	var delivered []item
	rest := items
	for len(rest) > 0 {
		wave, later := []*pending{}, rest[:0:0]
		inWave := map[string]bool{}
		blocked := map[string]bool{}
		for _, it := range rest {
			if inWave[it.key] || blocked[it.key] || len(wave) == maxWave {
				blocked[it.key] = true
				later = append(later, it)
				continue
			}
			p, err := d.resign(it)
			if err != nil {
				// Undeliverable: drop it (counted), so the session's next record can go.
				d.drops(1)
				delivered = append(delivered, it)
				continue
			}
			inWave[it.key] = true
			wave = append(wave, p)
		}
		if err := d.send(ctx, wave); err != nil {
			for _, p := range wave {
				if p.done {
					delivered = append(delivered, p.it)
				}
			}
			return delivered, err
		}
		for _, p := range wave {
			delivered = append(delivered, p.it)
		}
		rest = later
	}
	return delivered, nil
}

// resign builds the copy for the server: a new identifier, Acct-Delay-Time grown by the wait,
// encrypted attributes re-hidden and the authenticators computed with the server's secret.
func (d *acctDriver) resign(it item) (*pending, error) {
	r, err := decodeAcct(it.payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUndeliverable, err)
	}
	raw, err := spool.AddDelay(r.pkt, d.now().Sub(r.received))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUndeliverable, err)
	}
	in, err := packet.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUndeliverable, err)
	}
	d.id++
	k := &packet.Rekey{FromSecret: d.secret(r.nas), ToSecret: d.o.Secret}
	out, err := packet.ForwardRequest(nil, in, k, d.id, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUndeliverable, err)
	}
	return &pending{it: it, pkt: out}, nil
}

// send writes a wave, once more at half the timeout for what is unanswered, and reads answers
// until every request has a verified Accounting-Response or the timeout passes.
func (d *acctDriver) send(ctx context.Context, wave []*pending) error {
	if len(wave) == 0 {
		return nil
	}
	byID := make(map[uint8]*pending, len(wave))
	for _, p := range wave {
		byID[p.pkt.ID()] = p
		if _, err := d.conn.Write(p.pkt); err != nil {
			return fmt.Errorf("identity: radius-accounting: %w", err)
		}
	}
	start := d.now()
	deadline := time.Now().Add(d.o.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	resent := false
	left := len(wave)
	buf := make([]byte, packet.MaxLen)
	for left > 0 {
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("identity: radius-accounting: %d of %d records unanswered after %v", left, len(wave), d.now().Sub(start).Round(time.Millisecond))
		}
		wait := deadline
		if !resent {
			wait = now.Add(d.o.Timeout / 2)
			if wait.After(deadline) {
				wait = deadline
			}
		}
		_ = d.conn.SetReadDeadline(wait)
		n, err := d.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !resent {
					resent = true
					for _, p := range wave {
						if !p.done {
							_, _ = d.conn.Write(p.pkt) // the same packet: a duplicate to the server (RFC 5080 §2.2.2)
						}
					}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			// An ICMP port unreachable shows here on a connected socket: the server is not there.
			return fmt.Errorf("identity: radius-accounting: %w", err)
		}
		resp, err := packet.Parse(buf[:n])
		if err != nil || resp.Code() != packet.CodeAccountingResponse {
			continue
		}
		p := byID[resp.ID()]
		if p == nil || p.done || !packet.CheckResponseAuthenticator(resp, p.pkt.Authenticator(), d.o.Secret) {
			continue // stale, duplicate, or not signed with our secret
		}
		p.done = true
		left--
	}
	return nil
}

func (d *acctDriver) close() error {
	if d.conn != nil {
		return d.conn.Close()
	}
	return nil
}
