package spool

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// RADIUS wire constants (RFC 2865 §3, RFC 2866).
const (
	headerLen    = 20   // Code, Identifier, Length, Authenticator
	maxPacketLen = 4096 // RFC 2865 §3
	offCode      = 0
	offLength    = 2

	codeAccountingRequest = 4  // RFC 2866 §3
	attrAcctDelayTime     = 41 // RFC 2866 §5.2
	acctDelayAttrLen      = 6  // type, length, 4-octet integer
)

// parseAccountingRequest validates pkt as an Accounting-Request and returns
// its Length field and the offset of the Acct-Delay-Time value (-1 when the
// attribute is absent). Octets beyond Length are padding (RFC 2865 §3: they
// are ignored) and are not examined.
func parseAccountingRequest(pkt []byte) (length, delayOff int, err error) {
	if len(pkt) < headerLen {
		return 0, -1, fmt.Errorf("%d octets, shorter than the %d-octet header", len(pkt), headerLen)
	}
	if pkt[offCode] != codeAccountingRequest {
		return 0, -1, fmt.Errorf("code %d is not Accounting-Request", pkt[offCode])
	}
	length = int(binary.BigEndian.Uint16(pkt[offLength:]))
	if length < headerLen || length > maxPacketLen || length > len(pkt) {
		return 0, -1, fmt.Errorf("length field %d invalid for %d octets", length, len(pkt))
	}
	delayOff = -1
	for off := headerLen; off < length; {
		if length-off < 2 {
			return 0, -1, fmt.Errorf("truncated attribute header at offset %d", off)
		}
		t, l := pkt[off], int(pkt[off+1])
		if l < 2 || off+l > length {
			return 0, -1, fmt.Errorf("attribute %d at offset %d has length %d", t, off, l)
		}
		if t == attrAcctDelayTime {
			// RFC 2866 §5.2 and §5.13: at most one, a 4-octet integer.
			if l != acctDelayAttrLen {
				return 0, -1, fmt.Errorf("Acct-Delay-Time has length %d, want %d", l, acctDelayAttrLen)
			}
			if delayOff >= 0 {
				return 0, -1, fmt.Errorf("more than one Acct-Delay-Time")
			}
			delayOff = off + 2
		}
		off += l
	}
	return length, delayOff, nil
}

// checkAccountingRequest validates pkt as an Accounting-Request and returns
// its Length field.
func checkAccountingRequest(pkt []byte) (int, error) {
	l, _, err := parseAccountingRequest(pkt)
	return l, err
}

// AddDelay returns a copy of the Accounting-Request pkt with its
// Acct-Delay-Time (RFC 2866 §5.2) increased by delay, rounded down to whole
// seconds: the attribute is appended when absent and saturates at 2^32-1
// seconds. A negative delay counts as zero. Padding beyond the Length field
// is dropped. It fails with ErrBadPacket when pkt is not a well-formed
// Accounting-Request or has no room for the attribute (4096 octets).
//
// The result is NOT signed: changing an attribute invalidates the
// Accounting-Request's Request Authenticator (RFC 2866 §3: MD5 over the
// packet with the shared secret) and any Message-Authenticator (RFC 3579
// §3.2). The caller must recompute both with the upstream's secret before
// sending it; this package deliberately knows no secrets.
func AddDelay(pkt []byte, delay time.Duration) ([]byte, error) {
	length, off, err := parseAccountingRequest(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPacket, err)
	}
	secs := uint64(max(delay, 0) / time.Second)
	if off < 0 {
		if length+acctDelayAttrLen > maxPacketLen {
			return nil, fmt.Errorf("%w: no room for Acct-Delay-Time in %d octets", ErrBadPacket, length)
		}
		out := make([]byte, length, length+acctDelayAttrLen)
		copy(out, pkt[:length])
		out = append(out, attrAcctDelayTime, acctDelayAttrLen)
		out = binary.BigEndian.AppendUint32(out, uint32(min(secs, math.MaxUint32)))
		binary.BigEndian.PutUint16(out[offLength:], uint16(len(out)))
		return out, nil
	}
	out := append([]byte(nil), pkt[:length]...)
	sum := uint64(binary.BigEndian.Uint32(out[off:])) + min(secs, math.MaxUint32) // no uint64 overflow
	binary.BigEndian.PutUint32(out[off:], uint32(min(sum, math.MaxUint32)))
	return out, nil
}
