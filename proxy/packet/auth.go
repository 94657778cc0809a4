package packet

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
)

// requestAuthZeroed reports whether the Request Authenticator of a request of this code is computed
// over a zeroed field (RFC 2866 §3, RFC 5176 §2.3), which also means Message-Authenticator is computed
// with that field zeroed (RFC 5176 §3.1; what FreeRADIUS does for accounting).
func requestAuthZeroed(c Code) bool {
	switch c {
	case CodeAccountingRequest, CodeDisconnectRequest, CodeCoARequest:
		return true
	}
	return false
}

// maOffset returns the offset of the Message-Authenticator value in p, or -1.
func (p Packet) maOffset() int {
	for it := p.Attrs(); ; {
		off := it.Offset()
		typ, _, ok := it.Next()
		if !ok {
			return -1
		}
		if typ == AttrMessageAuthenticator {
			return off + 2
		}
	}
}

// messageAuthenticator computes HMAC-MD5 over p with the Message-Authenticator value at maOff
// treated as zero and the authenticator field replaced by auth (RFC 3579 §3.2).
func messageAuthenticator(p []byte, maOff int, auth, secret []byte, out []byte) {
	// HMAC-MD5 (RFC 2104) written out with one MD5 state: crypto/hmac's constructor allocates and
	// keys two states per call, which was a tenth of the proxy's CPU per request.
	var pad [md5.BlockSize]byte
	key := secret
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key)
		key = sum[:]
	}
	copy(pad[:], key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	h := md5.New()
	h.Write(pad[:])
	var zero [AuthLen]byte
	for _, b := range maParts(p, maOff, auth, &zero) {
		h.Write(b)
	}
	var inner [md5.Size]byte
	h.Sum(inner[:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	h.Reset()
	h.Write(pad[:])
	h.Write(inner[:])
	h.Sum(out[:0])
}

// maParts are what HMAC-MD5 covers for Message-Authenticator, in order: p with its authenticator
// field replaced by auth and the Message-Authenticator value at maOff as zero (RFC 3579 §3.2). The
// caller writes them itself, so that its MD5 state stays on its stack.
func maParts(p []byte, maOff int, auth []byte, zero *[AuthLen]byte) [5][]byte {
	return [5][]byte{p[:offAuth], auth, p[HeaderLen:maOff], zero[:], p[maOff+AuthLen:]}
}

// maSecret is what a Message-Authenticator is computed with: the secret's key schedule when the
// caller has one (NewMAKey), else the secret itself.
type maSecret struct {
	secret []byte
	key    *MAKey
}

func (s maSecret) sum(p []byte, maOff int, auth, out []byte) {
	if s.key != nil {
		messageAuthenticatorKey(p, maOff, auth, s.key, out)
		return
	}
	messageAuthenticator(p, maOff, auth, s.secret, out)
}

// MAStatus is the outcome of checking Message-Authenticator.
type MAStatus uint8

const (
	MAAbsent MAStatus = iota
	MAValid
	MAInvalid
)

// CheckRequestMA verifies the Message-Authenticator of a request, if present.
func CheckRequestMA(p Packet, secret []byte) MAStatus {
	return checkRequestMA(p, maSecret{secret: secret})
}

// CheckRequestMAKey is CheckRequestMA with the secret's key schedule (NewMAKey).
func CheckRequestMAKey(p Packet, k *MAKey) MAStatus {
	return checkRequestMA(p, maSecret{key: k})
}

func checkRequestMA(p Packet, s maSecret) MAStatus {
	off := p.maOffset()
	if off < 0 {
		return MAAbsent
	}
	auth := p.Authenticator()
	var zero [AuthLen]byte
	if requestAuthZeroed(p.Code()) {
		auth = zero[:]
	}
	var sum [AuthLen]byte
	s.sum(p, off, auth, sum[:])
	if subtle.ConstantTimeCompare(sum[:], p[off:off+AuthLen]) != 1 {
		return MAInvalid
	}
	return MAValid
}

// responseMAVector returns the authenticator value a response's Message-Authenticator is computed
// over. Accounting-Response uses a zeroed field, like Accounting-Request, unless it answers a
// Status-Server (what FreeRADIUS and radclient do; RFC 5997 §3 for the Status-Server case); every
// other response uses the request's authenticator (RFC 3579 §3.2).
func responseMAVector(code Code, reqAuth []byte, statusReply bool) []byte {
	if code == CodeAccountingResponse && !statusReply {
		return make([]byte, AuthLen)
	}
	return reqAuth
}

// CheckResponseMAKey is CheckResponseMA with the secret's key schedule (NewMAKey).
func CheckResponseMAKey(p Packet, reqAuth []byte, k *MAKey) MAStatus {
	return checkResponseMA(p, reqAuth, maSecret{key: k}, false)
}

// CheckResponseMA verifies the Message-Authenticator of a response to a request whose authenticator
// was reqAuth, if present.
func CheckResponseMA(p Packet, reqAuth, secret []byte) MAStatus {
	return checkResponseMA(p, reqAuth, maSecret{secret: secret}, false)
}

// CheckStatusReplyMA is CheckResponseMA for a reply to Status-Server.
func CheckStatusReplyMA(p Packet, reqAuth, secret []byte) MAStatus {
	return checkResponseMA(p, reqAuth, maSecret{secret: secret}, true)
}

func checkResponseMA(p Packet, reqAuth []byte, s maSecret, statusReply bool) MAStatus {
	off := p.maOffset()
	if off < 0 {
		return MAAbsent
	}
	var sum [AuthLen]byte
	s.sum(p, off, responseMAVector(p.Code(), reqAuth, statusReply), sum[:])
	if subtle.ConstantTimeCompare(sum[:], p[off:off+AuthLen]) != 1 {
		return MAInvalid
	}
	return MAValid
}

// CheckRequestAuthenticator verifies the Request Authenticator of an Accounting-Request, CoA-Request
// or Disconnect-Request (RFC 2866 §3, RFC 5176 §2.3). Access-Request and Status-Server carry a random
// authenticator that cannot be checked; for them it returns true.
func CheckRequestAuthenticator(p Packet, secret []byte) bool {
	if !requestAuthZeroed(p.Code()) {
		return true
	}
	var zero [AuthLen]byte
	var sum [AuthLen]byte
	digest(p, zero[:], secret, sum[:])
	return subtle.ConstantTimeCompare(sum[:], p.Authenticator()) == 1
}

// CheckResponseAuthenticator verifies a response's Response Authenticator (RFC 2865 §3):
// MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
func CheckResponseAuthenticator(p Packet, reqAuth, secret []byte) bool {
	var sum [AuthLen]byte
	digest(p, reqAuth, secret, sum[:])
	return subtle.ConstantTimeCompare(sum[:], p.Authenticator()) == 1
}

// digest computes MD5 over p with its authenticator field replaced by auth, followed by secret.
func digest(p []byte, auth, secret []byte, out []byte) {
	h := md5.New()
	h.Write(p[:offAuth])
	h.Write(auth)
	h.Write(p[HeaderLen:])
	h.Write(secret)
	h.Sum(out[:0])
}

// Sign finishes a packet whose attributes are final: it fills in Message-Authenticator (if the
// packet has one) and then the authenticator field.
//
// For responses, reqAuth is the authenticator of the request being answered. For requests, reqAuth
// must be nil: Access-Request and Status-Server keep the random authenticator already in p, the
// others get the RFC 2866 digest.
func Sign(p []byte, secret, reqAuth []byte) { sign(p, secret, reqAuth, false) }

// SignStatusReply is Sign for a reply to Status-Server.
func SignStatusReply(p []byte, secret, reqAuth []byte) { sign(p, secret, reqAuth, true) }

func sign(p []byte, secret, reqAuth []byte, statusReply bool) {
	signKey(p, secret, nil, reqAuth, statusReply)
}

// signKey is sign with secret's key schedule k, when the caller has one (nil: from secret).
func signKey(p []byte, secret []byte, k *MAKey, reqAuth []byte, statusReply bool) {
	binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)))
	code := Code(p[offCode])
	maOff := Packet(p).maOffset()
	var zero [AuthLen]byte
	ma := func(auth []byte) { maSecret{secret, k}.sum(p, maOff, auth, p[maOff:maOff+AuthLen]) }
	switch {
	case reqAuth != nil: // response
		if maOff >= 0 {
			ma(responseMAVector(code, reqAuth, statusReply))
		}
		digest(p, reqAuth, secret, p[offAuth:offAuth+AuthLen])
	case requestAuthZeroed(code):
		if maOff >= 0 {
			ma(zero[:])
		}
		digest(p, zero[:], secret, p[offAuth:offAuth+AuthLen])
	default: // Access-Request, Status-Server: random authenticator already set
		if maOff >= 0 {
			ma(p[offAuth : offAuth+AuthLen])
		}
	}
}
