package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EAP packet codes (RFC 3748 §4).
const (
	EAPRequest  = 1
	EAPResponse = 2
	EAPSuccess  = 3
	EAPFailure  = 4
)

// EAP header layout (RFC 3748 §4): Code, Identifier, Length, then Type and Type-Data for Requests
// and Responses.
const (
	eapOffCode   = 0
	eapOffLength = 2
	eapOffType   = 4
	// eapHeaderLen is Code, Identifier and Length.
	eapHeaderLen = 4
	// eapTypeExpanded is the Expanded Type (RFC 3748 §5.7): Type, 3-octet Vendor-Id and 4-octet
	// Vendor-Type follow the header, 12 octets in all.
	eapTypeExpanded   = 254
	eapExpandedMinLen = eapHeaderLen + 1 + 3 + 4
	// maxEAPChunk is the most one EAP-Message attribute carries (RFC 3579 §3.1).
	maxEAPChunk = 253
)

// ErrEAP is wrapped by every EAP framing error, so the front door can count them under one reason.
var ErrEAP = errors.New("packet: malformed EAP-Message")

// Errors returned by CheckEAP, each wrapping ErrEAP.
var (
	ErrEAPShort      = fmt.Errorf("%w: first EAP-Message attribute shorter than the 4-octet EAP header", ErrEAP)
	ErrEAPLength     = fmt.Errorf("%w: EAP Length differs from the EAP-Message attributes' length", ErrEAP)
	ErrEAPCode       = fmt.Errorf("%w: EAP Code not Request, Response, Success or Failure", ErrEAP)
	ErrEAPNoType     = fmt.Errorf("%w: EAP Request or Response without a Type", ErrEAP)
	ErrEAPType       = fmt.Errorf("%w: EAP Type 0 is reserved", ErrEAP)
	ErrEAPExpanded   = fmt.Errorf("%w: Expanded Type shorter than 12 octets", ErrEAP)
	ErrEAPEmptyChunk = fmt.Errorf("%w: empty EAP-Message attribute in a fragmented EAP packet", ErrEAP)
)

// CheckEAP validates the EAP packet carried in p's EAP-Message attributes without copying it
// (RFC 3579 §3.1: the attributes' values concatenated form one EAP packet; RFC 3748 §4: its header).
// A packet without EAP-Message is valid. A single EAP-Message with no data is EAP-Start
// (RFC 3579 §2.1) and valid too. Otherwise:
//   - the first attribute holds at least the 4-octet header, and no attribute is empty;
//   - the EAP Length equals the concatenated length (this also bounds reassembly: the EAP packet
//     can be no longer than the RADIUS packet holding it);
//   - the Code is Request, Response, Success or Failure; a Request or Response (Length >= 5)
//     carries a Type, which is not 0, and an Expanded Type (254) carries its Vendor-Id and
//     Vendor-Type (RFC 3748 §5.7).
//
// These are the checks FreeRADIUS's rlm_eap and radsecproxy apply before they accept an EAP
// packet; a proxy that forwarded a packet failing them would spend an upstream conversation on it.
func CheckEAP(p Packet) error {
	var hdr [eapOffType + 1]byte // Code, Identifier, Length, Type: the first 5 octets
	have, total, chunks, empty := 0, 0, 0, 0
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ != AttrEAPMessage {
			continue
		}
		chunks++
		if len(v) == 0 {
			empty++
		}
		if chunks == 1 && len(v) > 0 && len(v) < eapHeaderLen {
			return ErrEAPShort
		}
		if have < len(hdr) {
			have += copy(hdr[have:], v)
		}
		total += len(v)
	}
	switch {
	case chunks == 0:
		return nil
	case chunks == 1 && empty == 1:
		return nil // EAP-Start
	case empty > 0:
		return ErrEAPEmptyChunk
	}
	// From here the first attribute held the whole header, so hdr has Code and Length.
	if n := int(binary.BigEndian.Uint16(hdr[eapOffLength:])); n != total {
		return fmt.Errorf("%w (%d, attributes %d)", ErrEAPLength, n, total)
	}
	switch hdr[eapOffCode] {
	case EAPRequest, EAPResponse:
		if total < eapOffType+1 {
			return ErrEAPNoType
		}
		switch hdr[eapOffType] {
		case 0:
			return ErrEAPType
		case eapTypeExpanded:
			if total < eapExpandedMinLen {
				return ErrEAPExpanded
			}
		}
	case EAPSuccess, EAPFailure:
	default:
		return fmt.Errorf("%w (%d)", ErrEAPCode, hdr[eapOffCode])
	}
	return nil
}

// EAPMessage returns the EAP packet carried in p appended to dst (nil, nil when p has no
// EAP-Message; an empty packet for EAP-Start), after the checks of CheckEAP.
func EAPMessage(dst []byte, p Packet) ([]byte, error) {
	if err := CheckEAP(p); err != nil {
		return nil, err
	}
	found := false
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == AttrEAPMessage {
			found = true
			dst = append(dst, v...)
		}
	}
	if !found {
		return nil, nil
	}
	if dst == nil {
		dst = []byte{}
	}
	return dst, nil
}

// AddEAP appends eap as consecutive EAP-Message attributes of at most 253 octets each
// (RFC 3579 §3.1). An empty eap is EAP-Start: one EAP-Message without data (RFC 3579 §2.1).
func (b *Builder) AddEAP(eap []byte) {
	if len(eap) == 0 {
		b.Add(AttrEAPMessage, nil)
		return
	}
	for len(eap) > 0 {
		n := min(len(eap), maxEAPChunk)
		b.Add(AttrEAPMessage, eap[:n])
		eap = eap[n:]
	}
}
