package packet

import (
	"crypto/md5"
	"errors"
)

// Errors from attribute decryption.
var (
	ErrPasswordLength = errors.New("packet: User-Password length not a multiple of 16 in 16..128")
	ErrSaltedLength   = errors.New("packet: salt-encrypted value length invalid")
	ErrSaltedPlain    = errors.New("packet: salt-encrypted value has a bad inner length")
)

// DecryptUserPassword reverses RFC 2865 §5.2 hiding into dst and returns the password with its
// zero padding intact (callers that need the text trim trailing NULs).
func DecryptUserPassword(dst, v, secret, reqAuth []byte) ([]byte, error) {
	if len(v) < 16 || len(v) > 128 || len(v)%16 != 0 {
		return nil, ErrPasswordLength
	}
	dst = append(dst[:0], v...)
	h := md5.New()
	var b [md5.Size]byte
	prev := reqAuth
	for i := 0; i < len(v); i += 16 {
		h.Reset()
		h.Write(secret)
		h.Write(prev)
		h.Sum(b[:0])
		for j := range 16 {
			dst[i+j] ^= b[j]
		}
		prev = v[i : i+16]
	}
	return dst, nil
}

// EncryptUserPassword hides a (possibly already padded) password per RFC 2865 §5.2 and appends it
// to dst. Padding to a multiple of 16 is added as needed.
func EncryptUserPassword(dst, password, secret, reqAuth []byte) []byte {
	n := (len(password) + 15) / 16 * 16
	if n == 0 {
		n = 16
	}
	start := len(dst)
	dst = append(dst, password...)
	for len(dst)-start < n {
		dst = append(dst, 0)
	}
	out := dst[start:]
	h := md5.New()
	var b [md5.Size]byte
	prev := reqAuth
	for i := 0; i < n; i += 16 {
		h.Reset()
		h.Write(secret)
		h.Write(prev)
		h.Sum(b[:0])
		for j := range 16 {
			out[i+j] ^= b[j]
		}
		prev = out[i : i+16]
	}
	return dst
}

// DecryptSalted reverses the salt encryption of RFC 2868 §3.5 and RFC 2548 §2.4.2: v is
// Salt(2) || encrypted(len || data || padding). It returns the inner data (without length byte and
// padding) appended to dst.
func DecryptSalted(dst, v, secret, reqAuth []byte) ([]byte, error) {
	if len(v) < 2+16 || (len(v)-2)%16 != 0 {
		return nil, ErrSaltedLength
	}
	salt, ct := v[:2], v[2:]
	start := len(dst)
	dst = append(dst, ct...)
	plain := dst[start:]
	h := md5.New()
	var b [md5.Size]byte
	for i := 0; i < len(ct); i += 16 {
		h.Reset()
		h.Write(secret)
		if i == 0 {
			h.Write(reqAuth)
			h.Write(salt)
		} else {
			h.Write(ct[i-16 : i])
		}
		h.Sum(b[:0])
		for j := range 16 {
			plain[i+j] ^= b[j]
		}
	}
	n := int(plain[0])
	if n > len(plain)-1 {
		return nil, ErrSaltedPlain
	}
	copy(plain, plain[1:1+n])
	return dst[:start+n], nil
}

// EncryptSalted salt-encrypts data (RFC 2868 §3.5) and appends Salt || ciphertext to dst. salt must
// have its most significant bit set and be unique per packet (the caller derives it).
func EncryptSalted(dst, data []byte, salt [2]byte, secret, reqAuth []byte) []byte {
	plainLen := 1 + len(data)
	n := (plainLen + 15) / 16 * 16
	dst = append(dst, salt[0], salt[1])
	start := len(dst)
	dst = append(dst, byte(len(data)))
	dst = append(dst, data...)
	for len(dst)-start < n {
		dst = append(dst, 0)
	}
	ct := dst[start:]
	h := md5.New()
	var b [md5.Size]byte
	for i := 0; i < n; i += 16 {
		h.Reset()
		h.Write(secret)
		if i == 0 {
			h.Write(reqAuth)
			h.Write(salt[:])
		} else {
			h.Write(ct[i-16 : i])
		}
		h.Sum(b[:0])
		for j := range 16 {
			ct[i+j] ^= b[j]
		}
	}
	return dst
}
