// Package packet owns the RADIUS wire format as mxedge handles it on the request path: validating
// datagrams and stream frames, walking attributes without copying, computing and checking
// authenticators and Message-Authenticator, and re-encrypting every secret-dependent attribute when a
// packet crosses from one shared secret to another (RFC 2865, 2866, 2868, 2548, 3579, 5080, 5997).
//
// It works on raw bytes rather than decoded attribute lists so that a proxied packet keeps every
// attribute it does not need to touch byte for byte, and so that the hot path allocates almost nothing.
// Names come from the attribute dictionary (dict.go), which names, parses and renders attributes
// and never decides how a packet is forwarded.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire layout (RFC 2865 §3).
const (
	offCode   = 0
	offID     = 1
	offLength = 2
	offAuth   = 4
	// HeaderLen is the fixed RADIUS header: code, identifier, length, authenticator.
	HeaderLen = 20
	// AuthLen is the length of the Request/Response Authenticator.
	AuthLen = 16
	// MaxLen is the largest RADIUS packet (RFC 2865 §3; RFC 7499 keeps it for UDP).
	MaxLen = 4096
	// maLen is the length of a Message-Authenticator attribute: type, length, 16-byte HMAC-MD5.
	maLen = 2 + 16
)

// Code is the RADIUS packet type.
type Code uint8

// Codes used by mxedge (RFC 2865, 2866, 5176, 5997).
const (
	CodeAccessRequest      Code = 1
	CodeAccessAccept       Code = 2
	CodeAccessReject       Code = 3
	CodeAccountingRequest  Code = 4
	CodeAccountingResponse Code = 5
	CodeAccessChallenge    Code = 11
	CodeStatusServer       Code = 12
	CodeStatusClient       Code = 13
	CodeDisconnectRequest  Code = 40
	CodeDisconnectACK      Code = 41
	CodeDisconnectNAK      Code = 42
	CodeCoARequest         Code = 43
	CodeCoAACK             Code = 44
	CodeCoANAK             Code = 45
)

var codeNames = map[Code]string{
	CodeAccessRequest: "Access-Request", CodeAccessAccept: "Access-Accept", CodeAccessReject: "Access-Reject",
	CodeAccountingRequest: "Accounting-Request", CodeAccountingResponse: "Accounting-Response",
	CodeAccessChallenge: "Access-Challenge", CodeStatusServer: "Status-Server", CodeStatusClient: "Status-Client",
	CodeDisconnectRequest: "Disconnect-Request", CodeDisconnectACK: "Disconnect-ACK", CodeDisconnectNAK: "Disconnect-NAK",
	CodeCoARequest: "CoA-Request", CodeCoAACK: "CoA-ACK", CodeCoANAK: "CoA-NAK",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Attribute types used by mxedge (RFC 2865, 2866, 2868, 2869, 3579, 3580).
const (
	AttrUserName             uint8 = 1
	AttrUserPassword         uint8 = 2
	AttrCHAPPassword         uint8 = 3
	AttrNASIPAddress         uint8 = 4
	AttrNASPort              uint8 = 5
	AttrServiceType          uint8 = 6
	AttrFilterID             uint8 = 11
	AttrReplyMessage         uint8 = 18
	AttrState                uint8 = 24
	AttrClass                uint8 = 25
	AttrVendorSpecific       uint8 = 26
	AttrSessionTimeout       uint8 = 27
	AttrIdleTimeout          uint8 = 28
	AttrTerminationAction    uint8 = 29
	AttrCalledStationID      uint8 = 30
	AttrCallingStationID     uint8 = 31
	AttrNASIdentifier        uint8 = 32
	AttrProxyState           uint8 = 33
	AttrAcctStatusType       uint8 = 40
	AttrAcctDelayTime        uint8 = 41
	AttrAcctSessionID        uint8 = 44
	AttrNASPortType          uint8 = 61
	AttrTunnelType           uint8 = 64
	AttrTunnelMediumType     uint8 = 65
	AttrTunnelPassword       uint8 = 69
	AttrEAPMessage           uint8 = 79
	AttrMessageAuthenticator uint8 = 80
	AttrTunnelPrivateGroupID uint8 = 81
	AttrNASIPv6Address       uint8 = 95
	AttrEgressVLANName       uint8 = 58
)

// Errors returned by Parse. They name the defect so the front door can count drops by reason.
var (
	ErrTooShort       = errors.New("packet: shorter than the 20-byte header")
	ErrTooLong        = errors.New("packet: length field above 4096")
	ErrLengthMismatch = errors.New("packet: length field larger than the datagram")
	ErrBadLength      = errors.New("packet: length field below 20")
	ErrAttrLength     = errors.New("packet: attribute length out of bounds")
	ErrDuplicateMA    = errors.New("packet: more than one Message-Authenticator")
	ErrMALength       = errors.New("packet: Message-Authenticator not 18 bytes")
)

// Packet is a validated RADIUS packet: its length field equals len(p) and its attributes are well
// formed. Only Parse and Builder produce one, so accessors need no bounds checks.
type Packet []byte

// Parse validates b as a RADIUS packet. Octets beyond the length field are padding and ignored
// (RFC 2865 §3); the returned Packet aliases b.
func Parse(b []byte) (Packet, error) {
	if len(b) < HeaderLen {
		return nil, ErrTooShort
	}
	n := int(binary.BigEndian.Uint16(b[offLength:]))
	switch {
	case n < HeaderLen:
		return nil, ErrBadLength
	case n > MaxLen:
		return nil, ErrTooLong
	case n > len(b):
		return nil, ErrLengthMismatch
	}
	p := Packet(b[:n])
	seenMA := false
	for off := HeaderLen; off < n; {
		if n-off < 2 {
			return nil, ErrAttrLength
		}
		l := int(p[off+1])
		if l < 2 || off+l > n {
			return nil, ErrAttrLength
		}
		if p[off] == AttrMessageAuthenticator {
			if l != maLen {
				return nil, ErrMALength
			}
			if seenMA {
				return nil, ErrDuplicateMA
			}
			seenMA = true
		}
		off += l
	}
	return p, nil
}

// FrameLen returns the length of the RADIUS packet starting at hdr, which must hold at least the
// first four bytes of a packet. Stream transports (RFC 6614 §2.1) use it to delimit packets.
func FrameLen(hdr []byte) (int, error) {
	if len(hdr) < 4 {
		return 0, ErrTooShort
	}
	n := int(binary.BigEndian.Uint16(hdr[offLength:]))
	switch {
	case n < HeaderLen:
		return 0, ErrBadLength
	case n > MaxLen:
		return 0, ErrTooLong
	}
	return n, nil
}

// Code returns the packet type.
func (p Packet) Code() Code { return Code(p[offCode]) }

// ID returns the packet identifier.
func (p Packet) ID() uint8 { return p[offID] }

// Authenticator returns the 16-byte Request or Response Authenticator (aliasing p).
func (p Packet) Authenticator() []byte { return p[offAuth : offAuth+AuthLen] }

// Attrs returns an iterator over the attributes in wire order.
func (p Packet) Attrs() Iter { return Iter{b: p, off: HeaderLen} }

// Attr returns the value of the first attribute of type t.
func (p Packet) Attr(t uint8) ([]byte, bool) {
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return nil, false
		}
		if typ == t {
			return v, true
		}
	}
}

// Has reports whether an attribute of type t is present.
func (p Packet) Has(t uint8) bool {
	_, ok := p.Attr(t)
	return ok
}

// Iter walks the attributes of a validated Packet.
type Iter struct {
	b   []byte
	off int
}

// Next returns the next attribute's type and value (aliasing the packet).
func (it *Iter) Next() (typ uint8, value []byte, ok bool) {
	if it.off+2 > len(it.b) {
		return 0, nil, false
	}
	typ, l := it.b[it.off], int(it.b[it.off+1])
	value = it.b[it.off+2 : it.off+l]
	it.off += l
	return typ, value, true
}

// Offset is the byte offset of the attribute Next will return.
func (it *Iter) Offset() int { return it.off }

// VSA is one vendor sub-attribute in the RFC 2865 §5.26 recommended format (1-byte type, 1-byte length).
type VSA struct {
	Vendor uint32
	Type   uint8
	Value  []byte
}

// SplitVSA calls fn for each sub-attribute of a Vendor-Specific value. It returns false when the
// value does not follow the recommended format, in which case a caller must pass it through opaque.
func SplitVSA(v []byte, fn func(VSA)) bool {
	if len(v) < 4+2 {
		return false
	}
	vendor := binary.BigEndian.Uint32(v)
	rest := v[4:]
	for off := 0; off < len(rest); {
		if len(rest)-off < 2 {
			return false
		}
		l := int(rest[off+1])
		if l < 2 || off+l > len(rest) {
			return false
		}
		off += l
	}
	if fn == nil {
		return true
	}
	for off := 0; off < len(rest); {
		l := int(rest[off+1])
		fn(VSA{Vendor: vendor, Type: rest[off], Value: rest[off+2 : off+l]})
		off += l
	}
	return true
}
