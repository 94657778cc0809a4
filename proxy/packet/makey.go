package packet

import (
	"crypto/md5"
	"encoding"
)

// MAKey is a shared secret's HMAC-MD5 key schedule for Message-Authenticator (RFC 3579 §3.2):
// the MD5 states after the inner and the outer padded key (RFC 2104 §4), computed once per
// secret so that each Message-Authenticator costs two MD5 blocks fewer.
type MAKey struct {
	inner, outer []byte // marshaled md5 states
}

// NewMAKey computes secret's key schedule.
func NewMAKey(secret []byte) *MAKey {
	key := secret
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key)
		key = sum[:]
	}
	var pad [md5.BlockSize]byte
	state := func(x byte) []byte {
		clear(pad[:])
		copy(pad[:], key)
		for i := range pad {
			pad[i] ^= x
		}
		h := md5.New()
		h.Write(pad[:])
		b, _ := h.(encoding.BinaryMarshaler).MarshalBinary() // md5's never fails
		return b
	}
	return &MAKey{inner: state(0x36), outer: state(0x5c)}
}

// messageAuthenticatorKey is messageAuthenticator with a key schedule.
func messageAuthenticatorKey(p []byte, maOff int, auth []byte, k *MAKey, out []byte) {
	h := md5.New()
	u := h.(encoding.BinaryUnmarshaler)
	_ = u.UnmarshalBinary(k.inner)
	var zero [AuthLen]byte
	for _, b := range maParts(p, maOff, auth, &zero) {
		h.Write(b)
	}
	var inner [md5.Size]byte
	h.Sum(inner[:0])
	_ = u.UnmarshalBinary(k.outer)
	h.Write(inner[:])
	h.Sum(out[:0])
}
