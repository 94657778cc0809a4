package radsec

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"mxedge/proxy/packet"
)

// ErrTranslatorFull: a RADIUS/1.1 peer has 256 requests waiting on one connection, the most a
// classic request path can tell apart by identifier.
var ErrTranslatorFull = errors.New("radsec: 256 RADIUS/1.1 requests outstanding on the connection")

// Translator carries the RADIUS/1.1 requests (RFC 9765) of one server-side connection through a
// request path that speaks classic RADIUS: each request gets an identifier and a Request
// Authenticator of its own, its hidden attributes are hidden with the connection's secret and it is
// signed, as if a classic peer had sent it; the classic response is turned back into RADIUS/1.1
// with the request's Token. The classic form never leaves the process. Safe for concurrent use.
type Translator struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	slots [256]translated
	free  idRing
}

type translated struct {
	busy  bool
	token uint32
	auth  [packet.AuthLen]byte
	exp   time.Time // a request the path dropped has no response: its identifier is taken back then
}

// NewTranslator returns a Translator for a connection whose classic secret is secret. An
// identifier whose request has had no response for ttl is reused (default 30s).
func NewTranslator(secret []byte, ttl time.Duration) *Translator {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	t := &Translator{secret: secret, ttl: ttl, now: time.Now}
	for i := range 256 {
		t.free.push(uint8(i))
	}
	return t
}

// Request returns the classic form of the RADIUS/1.1 request p.
func (t *Translator) Request(p packet.Packet) (packet.Packet, error) {
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	now := t.now()
	t.mu.Lock()
	id, ok := t.free.pop()
	if !ok {
		for i := range t.slots {
			if s := &t.slots[i]; s.busy && now.After(s.exp) {
				*s = translated{}
				t.free.push(uint8(i))
			}
		}
		id, ok = t.free.pop()
	}
	if !ok {
		t.mu.Unlock()
		return nil, ErrTranslatorFull
	}
	t.slots[id] = translated{busy: true, token: p.Token(), exp: now.Add(t.ttl)}
	t.mu.Unlock()
	out, err := packet.ForwardRequestAdding(nil, p, &packet.Rekey{FromClear: true, ToSecret: t.secret}, id, auth[:], nil, nil)
	t.mu.Lock()
	if err != nil {
		t.slots[id] = translated{}
		t.free.push(id)
		t.mu.Unlock()
		return nil, fmt.Errorf("radsec: RADIUS/1.1 %v: %w", p.Code(), err)
	}
	copy(t.slots[id].auth[:], out.Authenticator())
	t.mu.Unlock()
	return out, nil
}

// Response turns the classic response to a translated request back into RADIUS/1.1 and frees the
// request's identifier.
func (t *Translator) Response(resp []byte) ([]byte, error) {
	n, err := packet.FrameLen(resp)
	if err != nil || n > len(resp) {
		return nil, fmt.Errorf("radsec: response is not a RADIUS packet: %d bytes", len(resp))
	}
	id := resp[1]
	t.mu.Lock()
	s := t.slots[id]
	if !s.busy {
		t.mu.Unlock()
		return nil, fmt.Errorf("radsec: response on id %d answers no RADIUS/1.1 request", id)
	}
	t.slots[id] = translated{}
	t.free.push(id)
	t.mu.Unlock()
	out, err := packet.ForwardResponseTo(nil, packet.Packet(resp[:n]), &packet.Rekey{FromSecret: t.secret, FromAuth: s.auth[:], ToClear: true}, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("radsec: RADIUS/1.1 response: %w", err)
	}
	packet.SetToken(out, s.token)
	return out, nil
}
