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
	return formatMAC(b), nil
}

// parseMAC returns the six octets of s in one of the NormalizeMAC notations.
func parseMAC(s string) ([macLen]byte, error) {
	var out [macLen]byte
	var digits [2 * macLen]byte
	n := 0
	switch len(s) {
	case 12: // aabbccddeeff
		copy(digits[:], s)
		n = 12
	case 17: // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff
		sep := s[2]
		if sep != ':' && sep != '-' {
			return out, fmt.Errorf("%w: %q", ErrBadMAC, s)
		}
		for i := 0; i < 17; i++ {
			if i%3 == 2 {
				if s[i] != sep {
					return out, fmt.Errorf("%w: %q", ErrBadMAC, s)
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
					return out, fmt.Errorf("%w: %q", ErrBadMAC, s)
				}
				continue
			}
			digits[n] = s[i]
			n++
		}
	default:
		return out, fmt.Errorf("%w: %q", ErrBadMAC, s)
	}
	for i := 0; i < macLen; i++ {
		hi, ok1 := unhex(digits[2*i])
		lo, ok2 := unhex(digits[2*i+1])
		if !ok1 || !ok2 {
			return out, fmt.Errorf("%w: %q", ErrBadMAC, s)
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
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
	const hexdigits = "0123456789abcdef"
	var out [17]byte
	for i, v := range b {
		out[3*i] = hexdigits[v>>4]
		out[3*i+1] = hexdigits[v&0x0f]
		if i < macLen-1 {
			out[3*i+2] = ':'
		}
	}
	return string(out[:])
}
