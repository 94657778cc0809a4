package packet

import (
	"encoding/binary"
	"errors"
)

// ErrAttrTooLong is returned when an attribute value exceeds 253 bytes or a packet would exceed MaxLen.
var ErrAttrTooLong = errors.New("packet: attribute or packet too long")

// Builder appends a packet into a caller-owned buffer. The zero value is not usable; use New or
// NewResponse. Sign (or Finish) completes it.
type Builder struct {
	b           []byte
	err         error
	statusReply bool
}

// New starts a packet of the given code and identifier. auth becomes the authenticator field; nil
// leaves it zero (for responses and accounting requests, which Sign fills in).
func New(dst []byte, code Code, id uint8, auth []byte) Builder {
	b := append(dst[:0], byte(code), id, 0, 0)
	if auth != nil {
		b = append(b, auth[:AuthLen]...)
	} else {
		b = append(b, make([]byte, AuthLen)...)
	}
	return Builder{b: b}
}

// NewResponse starts a response to req with Message-Authenticator as its first attribute, as every
// response mxedge sends carries one (BlastRADIUS, CVE-2024-3596).
func NewResponse(dst []byte, req Packet, code Code) Builder {
	b := New(dst, code, req.ID(), nil)
	b.statusReply = req.Code() == CodeStatusServer
	b.AddMA()
	return b
}

// Add appends an attribute.
func (b *Builder) Add(t uint8, v []byte) {
	if len(v) > 253 || len(b.b)+2+len(v) > MaxLen {
		b.err = ErrAttrTooLong
		return
	}
	b.b = append(b.b, t, byte(2+len(v)))
	b.b = append(b.b, v...)
}

// AddString appends a text attribute.
func (b *Builder) AddString(t uint8, s string) {
	if len(s) > 253 || len(b.b)+2+len(s) > MaxLen {
		b.err = ErrAttrTooLong
		return
	}
	b.b = append(b.b, t, byte(2+len(s)))
	b.b = append(b.b, s...)
}

// AddUint32 appends an integer attribute.
func (b *Builder) AddUint32(t uint8, v uint32) {
	b.b = append(b.b, t, 6)
	b.b = binary.BigEndian.AppendUint32(b.b, v)
}

// AddTagged appends an RFC 2868 tagged attribute (tag 0 means untagged for string types).
func (b *Builder) AddTagged(t, tag uint8, v []byte) {
	if tag == 0 {
		b.Add(t, v)
		return
	}
	if len(v) > 252 {
		b.err = ErrAttrTooLong
		return
	}
	b.b = append(b.b, t, byte(3+len(v)), tag)
	b.b = append(b.b, v...)
}

// AddVSA appends a Vendor-Specific attribute holding one sub-attribute.
func (b *Builder) AddVSA(vendor uint32, typ uint8, v []byte) {
	if len(v) > 247 || len(b.b)+8+len(v) > MaxLen {
		b.err = ErrAttrTooLong
		return
	}
	b.b = append(b.b, AttrVendorSpecific, byte(8+len(v)))
	b.b = binary.BigEndian.AppendUint32(b.b, vendor)
	b.b = append(b.b, typ, byte(2+len(v)))
	b.b = append(b.b, v...)
}

// AddMA appends a zeroed Message-Authenticator that Sign fills in.
func (b *Builder) AddMA() {
	b.b = append(b.b, AttrMessageAuthenticator, maLen)
	b.b = append(b.b, make([]byte, AuthLen)...)
}

// Len is the current encoded length.
func (b *Builder) Len() int { return len(b.b) }

// Finish signs the packet (see Sign) and returns it.
func (b *Builder) Finish(secret, reqAuth []byte) (Packet, error) {
	return b.FinishKey(secret, nil, reqAuth)
}

// FinishKey is Finish with k, secret's key schedule (NewMAKey): its Message-Authenticator costs
// two MD5 blocks fewer. A nil k is Finish.
func (b *Builder) FinishKey(secret []byte, k *MAKey, reqAuth []byte) (Packet, error) {
	if b.err != nil {
		return nil, b.err
	}
	if len(b.b) > MaxLen {
		return nil, ErrAttrTooLong
	}
	signKey(b.b, secret, k, reqAuth, b.statusReply && reqAuth != nil)
	return Packet(b.b), nil
}
