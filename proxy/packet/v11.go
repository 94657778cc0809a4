package packet

import (
	"encoding/binary"
	"errors"
)

// RADIUS/1.1 (RFC 9765) keeps the RADIUS header's size and changes the meaning of its fields:
// Code, Reserved-1 (where the Identifier was), Length, a 4-octet Token and 12 octets of Reserved-2
// (where the authenticator was). Requests and responses are matched by Token; nothing is signed
// and no attribute is hidden with the shared secret (Rekey.FromClear/ToClear).
const (
	offToken    = 4
	offReserved = 8
)

// ErrClearPasswordLength: a User-Password received on a RADIUS/1.1 hop must be 1 to 128 octets
// (RFC 9765, "User-Password").
var ErrClearPasswordLength = errors.New("packet: RADIUS/1.1 User-Password not 1..128 octets")

// Token returns the Token of a RADIUS/1.1 packet (RFC 9765, "The Token Field").
func (p Packet) Token() uint32 { return binary.BigEndian.Uint32(p[offToken:]) }

// SetToken writes a RADIUS/1.1 header's Token and clears Reserved-1 and Reserved-2, which a
// sender must set to zero (RFC 9765, "RADIUS/1.1 Packet Format"). p must be at least HeaderLen
// long.
func SetToken(p []byte, token uint32) {
	p[offID] = 0
	binary.BigEndian.PutUint32(p[offToken:], token)
	clear(p[offReserved:HeaderLen])
}
