package cache

import "fmt"

// macLen is the length of an IEEE 802 MAC-48 address in octets.
const macLen = 6

// NormalizeMAC accepts a MAC-48 address as aabbccddeeff, AA-BB-CC-DD-EE-FF
// (IEEE 802 / RFC 3580 §3.21 Calling-Station-Id form), aa:bb:cc:dd:ee:ff or
// aabb.ccdd.eeff (Cisco), in any case, and returns the canonical lower-case
// "aa:bb:cc:dd:ee:ff" form. Anything else, including mixed separators,
// returns ErrBadMAC.
func NormalizeMAC(s string) (string, error) {
	b, err := parseMAC(s)
	if err != nil {
		return "", err
	}
	var canon [17]byte
	if appendMAC(canon[:0], b); string(canon[:]) == s {
		return s, nil // already canonical: no copy
	}
	return string(canon[:]), nil
}

// ParseMAC returns the six octets of s in one of the NormalizeMAC notations, and false for
// anything else. It never allocates, so the request path can classify with it.
func ParseMAC[T string | []byte](s T) ([macLen]byte, bool) {
	var out [macLen]byte
	var digits [2 * macLen]byte
	n := 0
	switch len(s) {
	case 12: // aabbccddeeff
		for i := range 12 {
			digits[i] = s[i]
		}
		n = 12
	case 17: // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff
		sep := s[2]
		if sep != ':' && sep != '-' {
			return out, false
		}
		for i := 0; i < 17; i++ {
			if i%3 == 2 {
				if s[i] != sep {
					return out, false
				}
				continue
			}
			digits[n] = s[i]
			n++
		}
	case 14: // aabb.ccdd.eeff
		for i := 0; i < 14; i++ {
			if i == 4 || i == 9 {
				if s[i] != '.' {
					return out, false
				}
				continue
			}
			digits[n] = s[i]
			n++
		}
	default:
		return out, false
	}
	for i := 0; i < macLen; i++ {
		hi, ok1 := unhex(digits[2*i])
		lo, ok2 := unhex(digits[2*i+1])
		if !ok1 || !ok2 {
			return out, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

// FormatMAC returns the canonical "aa:bb:cc:dd:ee:ff" form of b.
func FormatMAC(b [macLen]byte) string { return formatMAC(b) }

// parseMAC is ParseMAC with ErrBadMAC naming s.
func parseMAC(s string) ([macLen]byte, error) {
	b, ok := ParseMAC(s)
	if !ok {
		return b, fmt.Errorf("%w: %q", ErrBadMAC, s)
	}
	return b, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func formatMAC(b [macLen]byte) string {
	var out [17]byte
	return string(appendMAC(out[:0], b))
}

// appendMAC appends the canonical form of b to dst.
func appendMAC(dst []byte, b [macLen]byte) []byte {
	const hexdigits = "0123456789abcdef"
	for i, v := range b {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, hexdigits[v>>4], hexdigits[v&0x0f])
	}
	return dst
}
