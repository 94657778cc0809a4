package eaptls

import (
	"encoding/binary"
	"fmt"
)

// Code is the EAP packet Code (RFC 3748 §4).
type Code uint8

// EAP codes, RFC 3748 §4.
const (
	CodeRequest  Code = 1
	CodeResponse Code = 2
	CodeSuccess  Code = 3
	CodeFailure  Code = 4
)

// Type is the EAP method Type (RFC 3748 §5).
type Type uint8

// EAP types used here.
const (
	TypeIdentity     Type = 1   // RFC 3748 §5.1
	TypeNotification Type = 2   // RFC 3748 §5.2
	TypeNak          Type = 3   // RFC 3748 §5.3.1 (legacy Nak, Response only)
	TypeTLS          Type = 13  // RFC 5216
	TypeExpanded     Type = 254 // RFC 3748 §5.7 (expanded Nak is §5.3.2)
)

// EAP header layout, RFC 3748 §4.
const (
	offCode        = 0
	offIdentifier  = 1
	offLength      = 2
	offType        = 4
	headerLen      = 4 // Code, Identifier, Length
	typedHeaderLen = 5 // plus Type, for Request and Response
	// MaxPacketLen is the largest EAP packet: the Length field is 16 bits.
	MaxPacketLen = 0xffff
)

// Packet is one EAP packet. Type and Data are meaningful for Request and
// Response only; Success and Failure carry neither (RFC 3748 §4.2).
type Packet struct {
	Code       Code
	Identifier uint8
	Type       Type
	// Data is the Type-Data. After ParsePacket it aliases the input.
	Data []byte
}

// ParsePacket decodes one EAP packet. Octets beyond the Length field are
// link-layer padding and ignored (RFC 3748 §4.1); a Length shorter than the
// header or longer than b is an error.
func ParsePacket(b []byte) (Packet, error) {
	if len(b) < headerLen {
		return Packet{}, fmt.Errorf("%w: eap packet of %d bytes is shorter than the header", ErrMalformed, len(b))
	}
	p := Packet{Code: Code(b[offCode]), Identifier: b[offIdentifier]}
	n := int(binary.BigEndian.Uint16(b[offLength:]))
	if n < headerLen || n > len(b) {
		return Packet{}, fmt.Errorf("%w: eap length %d, have %d bytes", ErrMalformed, n, len(b))
	}
	b = b[:n]
	switch p.Code {
	case CodeRequest, CodeResponse:
		if n < typedHeaderLen {
			return Packet{}, fmt.Errorf("%w: eap %v without type", ErrMalformed, p.Code)
		}
		p.Type = Type(b[offType])
		p.Data = b[typedHeaderLen:]
	case CodeSuccess, CodeFailure:
		// RFC 3748 §4.2: Success and Failure have no data. Tolerate trailing
		// octets inside Length as some NASes pad, but do not expose them.
	default:
		return Packet{}, fmt.Errorf("%w: eap code %d", ErrMalformed, p.Code)
	}
	return p, nil
}

// Len is the encoded length of p.
func (p Packet) Len() int {
	if p.Code == CodeSuccess || p.Code == CodeFailure {
		return headerLen
	}
	return typedHeaderLen + len(p.Data)
}

// Marshal encodes p. It fails only when p cannot be represented: unknown
// code or more than MaxPacketLen bytes.
func (p Packet) Marshal() ([]byte, error) {
	return p.Append(make([]byte, 0, p.Len()))
}

// Append appends the encoding of p to b.
func (p Packet) Append(b []byte) ([]byte, error) {
	switch p.Code {
	case CodeRequest, CodeResponse, CodeSuccess, CodeFailure:
	default:
		return b, fmt.Errorf("%w: eap code %d", ErrMalformed, p.Code)
	}
	n := p.Len()
	if n > MaxPacketLen {
		return b, fmt.Errorf("%w: eap packet of %d bytes", ErrMalformed, n)
	}
	b = append(b, byte(p.Code), p.Identifier, byte(n>>8), byte(n))
	if n > headerLen {
		b = append(b, byte(p.Type))
		b = append(b, p.Data...)
	}
	return b, nil
}

// mustMarshal is for packets this package builds itself, whose size is
// bounded by construction (FragmentSize ≤ maxFragmentSize).
func (p Packet) mustMarshal() []byte {
	b, err := p.Marshal()
	if err != nil {
		// Unreachable: callers only build packets with known codes and
		// bounded data. Returning nil would turn a bug into a silent hang.
		panic(err)
	}
	return b
}

func (c Code) String() string {
	switch c {
	case CodeRequest:
		return "request"
	case CodeResponse:
		return "response"
	case CodeSuccess:
		return "success"
	case CodeFailure:
		return "failure"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// ParseNak decodes the Type-Data of a legacy Nak (RFC 3748 §5.3.1): one
// octet per acceptable type; 0 means "no alternative".
func ParseNak(data []byte) ([]Type, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty nak", ErrMalformed)
	}
	types := make([]Type, 0, len(data))
	for _, t := range data {
		if t == 0 {
			continue
		}
		types = append(types, Type(t))
	}
	return types, nil
}

// AppendNak encodes types as Nak Type-Data; no types encodes the single 0
// octet that means "no acceptable alternative" (RFC 3748 §5.3.1).
func AppendNak(b []byte, types []Type) []byte {
	if len(types) == 0 {
		return append(b, 0)
	}
	for _, t := range types {
		b = append(b, byte(t))
	}
	return b
}
