package bench

import (
	"fmt"

	"mxedge/proxy/packet"
)

// acctCycle walks one worker's sessions through their accounting: Start, Interim-Update (with a
// new address: an identity update), Stop, then the next session.
type acctCycle struct {
	prefix  uint64 // random per worker and run: session ids never repeat across runs
	session int
	step    int // 0 Start, 1 Interim-Update, 2 Stop
}

// Acct-Status-Type values (RFC 2866 §5.1) in the order a session sends them.
var acctCycleStatus = [3]uint32{1, 3, 2}

const attrFramedIPAddress = 8 // RFC 2865 §5.8

// accountingRequest builds the worker's next Accounting-Request (RFC 2866 §4.1), its Request
// Authenticator signed with the secret.
func (w *worker) accountingRequest() (packet.Packet, [packet.AuthLen]byte, error) {
	var auth [packet.AuthLen]byte
	w.id++
	c := &w.acct
	if c.prefix == 0 {
		c.prefix = w.rng.Uint64() | 1
	}
	b := packet.New(w.req, packet.CodeAccountingRequest, w.id, nil)
	b.AddUint32(packet.AttrAcctStatusType, acctCycleStatus[c.step])
	b.AddString(packet.AttrAcctSessionID, fmt.Sprintf("%x-%d", c.prefix, c.session))
	b.AddString(packet.AttrUserName, w.opts.User+"@bench.example")
	b.Add(packet.AttrNASIPAddress, []byte{127, 0, 0, 1})
	b.AddUint32(packet.AttrNASPort, uint32(c.session))
	b.AddString(packet.AttrCallingStationID, "02-00-00-00-00-01")
	b.AddString(packet.AttrCalledStationID, "02-00-00-00-00-ff:Bench")
	ip := []byte{10, byte(c.step), byte(c.session >> 8), byte(c.session)}
	b.Add(attrFramedIPAddress, ip)
	p, err := b.Finish([]byte(w.opts.Secret), nil)
	if err != nil {
		return nil, auth, fmt.Errorf("bench: load: build accounting request: %w", err)
	}
	copy(auth[:], p.Authenticator())
	if c.step++; c.step == len(acctCycleStatus) {
		c.step = 0
		c.session++
	}
	w.req = p[:0]
	return p, auth, nil
}
