package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// VendorMicrosoft is the IANA enterprise number of Microsoft (RFC 2548).
const VendorMicrosoft = 311

// Errors of re-keying.
var (
	// ErrProxyState is returned by ForwardResponse when the reply lacks the Proxy-State mxedge added.
	ErrProxyState = errors.New("packet: reply does not echo our Proxy-State")
	// ErrRekeyScheme: an attribute is hidden with a scheme re-keying does not implement (encrypt=3,
	// Ascend's): forwarding it unchanged would hand the next hop a value it decrypts to garbage.
	ErrRekeyScheme = errors.New("packet: cannot re-key attribute")
)

// Rekey carries what a secret-dependent attribute needs to move between two hops. Which
// attributes those are comes from Dict's encrypt= flags (Dictionary.Encrypted): User-Password,
// Tunnel-Password, the MS-MPPE keys, Aruba-MPSK-Passphrase and any an operator's dictionary marks.
type Rekey struct {
	FromSecret, FromAuth []byte // secret and request authenticator the value is encrypted with now
	ToSecret, ToAuth     []byte // secret and request authenticator to encrypt it with
	// ToMAKey, if set, is ToSecret's key schedule (NewMAKey), which signs Message-Authenticator
	// for less; it must be made from ToSecret.
	ToMAKey *MAKey
	Salt    uint16      // per-packet salt seed; each salted attribute gets the next value
	Dict    *Dictionary // the encrypt= table; nil means Builtin()
	// FromClear: the packet comes from a RADIUS/1.1 connection, where every hidden attribute is
	// carried as its plain value (RFC 9765, "Obfuscated Attributes"); FromSecret/FromAuth are unused.
	// ToClear: it goes to one, so hidden values are written plain; ToSecret/ToAuth are unused.
	FromClear, ToClear bool
	scratch            []byte
}

// vector is an authenticator to hide or reveal with: nil stands for the zero vector, made only when
// a hidden value needs it, so forwarding an Accounting-Request without one allocates nothing.
func vector(auth []byte) []byte {
	if auth == nil {
		return make([]byte, AuthLen)
	}
	return auth
}

func (k *Rekey) dict() *Dictionary {
	if k.Dict == nil {
		return Builtin()
	}
	return k.Dict
}

func (k *Rekey) nextSalt() [2]byte {
	k.Salt++
	return [2]byte{byte(k.Salt>>8) | 0x80, byte(k.Salt)}
}

// password re-hides a User-Password style value (RFC 2865 §5.2). On a RADIUS/1.1 hop the value is
// the password itself, 1 to 128 octets (RFC 9765, "User-Password"): the NUL padding of the hidden
// form is not part of it.
func (k *Rekey) password(dst, v []byte) ([]byte, error) {
	plain := v
	if !k.FromClear {
		var err error
		if plain, err = DecryptUserPassword(k.scratch[:0], v, k.FromSecret, vector(k.FromAuth)); err != nil {
			return nil, err
		}
		k.scratch = plain
	} else if len(v) < 1 || len(v) > 128 {
		return nil, ErrClearPasswordLength
	}
	if k.ToClear {
		for len(plain) > 1 && plain[len(plain)-1] == 0 {
			plain = plain[:len(plain)-1]
		}
		return append(dst, plain...), nil
	}
	return EncryptUserPassword(dst, plain, k.ToSecret, vector(k.ToAuth)), nil
}

// salted re-encrypts a Salt||ciphertext value (RFC 2868 §3.5) under a fresh salt. On a RADIUS/1.1
// hop the value is the data alone, without Salt and Data-Length (RFC 9765, "Tunnel-Password" and
// "Vendor-Specific Attributes" for the MS-MPPE keys).
func (k *Rekey) salted(dst, v []byte) ([]byte, error) {
	plain := v
	if !k.FromClear {
		var err error
		if plain, err = DecryptSalted(k.scratch[:0], v, k.FromSecret, vector(k.FromAuth)); err != nil {
			return nil, err
		}
		k.scratch = plain
	} else if len(v) > 239 {
		// Salt, Data-Length and padding must still fit the classic attribute.
		return nil, ErrSaltedLength
	}
	if k.ToClear {
		return append(dst, plain...), nil
	}
	return EncryptSalted(dst, plain, k.nextSalt(), k.ToSecret, vector(k.ToAuth)), nil
}

// value appends the re-keyed value v of attribute def. A tagged attribute keeps its tag octet in
// the clear ahead of the salt (RFC 2868 §3.5: Tunnel-Password always carries one).
func (k *Rekey) value(dst []byte, def *AttrDef, v []byte) ([]byte, error) {
	if def.Tagged {
		switch {
		case k.FromClear && (len(v) == 0 || v[0] > 0x1F):
			// A plain tagged string may leave the tag out (RFC 2868 §3.3); the hidden form
			// always has one (RFC 2868 §3.5): tag 0.
			dst = append(dst, 0)
		case len(v) < 1:
			return nil, ErrSaltedLength
		default:
			dst, v = append(dst, v[0]), v[1:]
		}
	}
	switch def.Encrypt {
	case SchemeUserPassword:
		return k.password(dst, v)
	case SchemeSalted:
		return k.salted(dst, v)
	}
	return nil, fmt.Errorf("%w: %s is %s", ErrRekeyScheme, def.Name, def.Encrypt)
}

// appendAttr copies attribute (typ, v) into dst, re-encrypting it if the dictionary marks it
// encrypt=. Every other attribute is copied byte for byte, and so is a Vendor-Specific of a
// vendor with no encrypt= attribute (unsplit, whatever its layout).
func (k *Rekey) appendAttr(dst []byte, typ uint8, v []byte) ([]byte, error) {
	d := k.dict()
	start := len(dst)
	var err error
	switch {
	case typ == AttrVendorSpecific:
		if len(v) >= 4 && d.hidesVendor(binary.BigEndian.Uint32(v)) && SplitVSA(v, nil) {
			return k.appendVSA(dst, d, v)
		}
	case typ >= firstExtended && typ <= lastExtended:
		// RFC 6929 §2.1: Extended-Type, then the value.
		if len(v) >= 1 {
			if def, ok := d.hiddenAttr(0, typ, v[0]); ok {
				dst = append(dst, typ, 0, v[0])
				if dst, err = k.value(dst, def, v[1:]); err != nil {
					return nil, err
				}
				return finishAttr(dst, start)
			}
		}
	default:
		if def, ok := d.hiddenAttr(0, typ, 0); ok {
			dst = append(dst, typ, 0)
			if dst, err = k.value(dst, def, v); err != nil {
				return nil, err
			}
			return finishAttr(dst, start)
		}
	}
	dst = append(dst, typ, byte(2+len(v)))
	return append(dst, v...), nil
}

// finishAttr writes the length of the attribute that starts at dst[start].
func finishAttr(dst []byte, start int) ([]byte, error) {
	if len(dst)-start > 255 {
		return nil, ErrAttrTooLong
	}
	dst[start+1] = byte(len(dst) - start)
	return dst, nil
}

// appendVSA copies a well-formed Vendor-Specific (RFC 2865 §5.26, one-octet type and length),
// re-keying the sub-attributes the dictionary marks encrypt= and copying the others byte for byte.
func (k *Rekey) appendVSA(dst []byte, d *Dictionary, v []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, AttrVendorSpecific, 0)
	dst = append(dst, v[:4]...)
	var err error
	SplitVSA(v, func(s VSA) {
		if err != nil {
			return
		}
		sub := len(dst)
		dst = append(dst, s.Type, 0)
		if def, ok := d.hiddenAttr(s.Vendor, s.Type, 0); ok {
			dst, err = k.value(dst, def, s.Value)
		} else {
			dst = append(dst, s.Value...)
		}
		if err == nil {
			dst, err = finishAttr(dst, sub)
		}
	})
	if err != nil {
		return nil, err
	}
	return finishAttr(dst, start)
}

// ForwardRequest writes into dst the copy of req that goes to the next hop: identifier id, a new
// authenticator (auth, used for Access-Request and Status-Server; others get the RFC 2866 digest),
// Message-Authenticator first (recomputed), every secret-dependent attribute re-encrypted from the
// NAS secret to the upstream secret, every other attribute (EAP-Message, VSAs, the NAS's own
// Proxy-State) byte for byte, CHAP-Challenge added when CHAP needs it (see needsCHAPChallenge), and
// proxyState appended as our own Proxy-State (RFC 2865 §5.33). Its length is ForwardLen.
func ForwardRequest(dst []byte, req Packet, k *Rekey, id uint8, auth []byte, proxyState []byte) (Packet, error) {
	return ForwardRequestAdding(dst, req, k, id, auth, proxyState, nil)
}

// ForwardRequestAdding is ForwardRequest that also appends extra, whole encoded attributes that
// depend on no secret (a route's Operator-Name, RFC 5580 §4.1, or Chargeable-User-Identity,
// RFC 4372 §2.1), before our Proxy-State.
func ForwardRequestAdding(dst []byte, req Packet, k *Rekey, id uint8, auth []byte, proxyState, extra []byte) (Packet, error) {
	code := req.Code()
	if requestAuthZeroed(code) || k.ToClear {
		auth = nil
	}
	if k.ToClear {
		// RFC 9765, "RADIUS/1.1 Packet Format": Reserved-1 where the Identifier was; the Token
		// (written by the connection that sends it) and Reserved-2 where the authenticator was.
		id = 0
	}
	b := New(dst, code, id, auth)
	if !k.ToClear {
		// RFC 9765, "Message-Authenticator": never sent on a RADIUS/1.1 hop.
		b.AddMA()
	}
	out := b.b
	// Accounting-style requests carry no encrypted attributes that use the authenticator; RFC
	// 2868 Tunnel-Password in them uses the zero vector (nil here, see vector), both ways: their
	// authenticator is a digest over the hidden values, so it cannot have hidden them.
	k.FromAuth = req.Authenticator()
	if requestAuthZeroed(code) {
		k.FromAuth = nil
	}
	k.ToAuth = auth
	var err error
	for it := req.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == AttrMessageAuthenticator {
			// Hop by hop (RFC 3579 §3.2); received on a RADIUS/1.1 hop it is ignored (RFC 9765).
			continue
		}
		if out, err = k.appendAttr(out, typ, v); err != nil {
			return nil, err
		}
	}
	// A request from a RADIUS/1.1 hop has no Request Authenticator to use as the challenge: its
	// client must have sent CHAP-Challenge (RFC 9765, "CHAP-Challenge").
	if !k.FromClear && needsCHAPChallenge(req) {
		out = append(out, AttrCHAPChallenge, chapChallengeLen)
		out = append(out, req.Authenticator()...)
	}
	out = append(out, extra...)
	if proxyState != nil {
		out = append(out, AttrProxyState, byte(2+len(proxyState)))
		out = append(out, proxyState...)
	}
	if len(out) > MaxLen {
		return nil, ErrAttrTooLong
	}
	if k.ToClear {
		binary.BigEndian.PutUint16(out[offLength:], uint16(len(out)))
	} else {
		signKey(out, k.ToSecret, k.ToMAKey, nil, false)
	}
	return Packet(out), nil
}

// ForwardResponse writes into dst the response for the NAS built from an upstream reply: the NAS's
// identifier, Message-Authenticator first, our Proxy-State removed (the NAS's own ones kept, in
// order), secret-dependent attributes re-encrypted from the upstream secret/authenticator to the
// NAS's, and the Response Authenticator computed over the NAS request's authenticator.
// The caller has already checked the reply's authenticator.
func ForwardResponse(dst []byte, resp Packet, k *Rekey, nasReq Packet, proxyState []byte) (Packet, error) {
	return forwardResponse(dst, resp, k, nasReq.ID(), nasReq.Authenticator(), false, proxyState)
}

// ForwardResponseTo is ForwardResponse for a request known by its identifier and Request
// Authenticator only (the classic form of a RADIUS/1.1 request, see radsec). With k.ToClear the
// response is in RADIUS/1.1 form, its Token left zero for the caller (SetToken).
func ForwardResponseTo(dst []byte, resp Packet, k *Rekey, id uint8, reqAuth []byte, statusReply bool) (Packet, error) {
	return forwardResponse(dst, resp, k, id, reqAuth, statusReply, nil)
}

func forwardResponse(dst []byte, resp Packet, k *Rekey, id uint8, reqAuth []byte, statusReply bool, proxyState []byte) (Packet, error) {
	if k.ToClear {
		id = 0
	}
	b := New(dst, resp.Code(), id, nil)
	if !k.ToClear {
		b.AddMA()
	}
	out := b.b
	k.ToAuth = reqAuth
	// Remove the last Proxy-State equal to ours: a proxy appends, so ours is the last one added.
	ourOff := -1
	if proxyState != nil {
		for it := resp.Attrs(); ; {
			off := it.Offset()
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ == AttrProxyState && bytes.Equal(v, proxyState) {
				ourOff = off
			}
		}
	}
	var err error
	for it := resp.Attrs(); ; {
		off := it.Offset()
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == AttrMessageAuthenticator || off == ourOff {
			continue
		}
		if out, err = k.appendAttr(out, typ, v); err != nil {
			return nil, err
		}
	}
	if len(out) > MaxLen {
		return nil, ErrAttrTooLong
	}
	switch {
	case k.ToClear:
		binary.BigEndian.PutUint16(out[offLength:], uint16(len(out)))
	case statusReply:
		signKey(out, k.ToSecret, k.ToMAKey, k.ToAuth, true)
	default:
		signKey(out, k.ToSecret, k.ToMAKey, k.ToAuth, false)
	}
	if proxyState != nil && ourOff < 0 {
		return Packet(out), ErrProxyState
	}
	return Packet(out), nil
}
