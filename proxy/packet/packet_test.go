package packet

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
)

func mustParse(tb testing.TB, b []byte) Packet {
	tb.Helper()
	p, err := Parse(b)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParseRejectsMalformed(t *testing.T) {
	good := []byte{1, 7, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 6, 'a', 'b', 'c', 'd'}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:19], ErrTooShort},
		{"length below header", append([]byte{1, 7, 0, 19}, good[4:]...), ErrBadLength},
		{"length above datagram", append([]byte{1, 7, 0, 40}, good[4:]...), ErrLengthMismatch},
		{"length above 4096", append([]byte{1, 7, 0x10, 0x01}, good[4:]...), ErrTooLong},
		{"attr length zero", append(append([]byte{}, good[:20]...), 1, 0, 0, 0, 0, 0), ErrAttrLength},
		{"attr overruns", append(append([]byte{1, 7, 0, 24}, good[4:20]...), 1, 9, 0, 0), ErrAttrLength},
		{"dangling byte", append(append([]byte{1, 7, 0, 21}, good[4:20]...), 1), ErrAttrLength},
		{"ma wrong size", append(append([]byte{1, 7, 0, 24}, good[4:20]...), 80, 4, 0, 0), ErrMALength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %v, want %v", err, tt.want)
			}
		})
	}
	// Octets beyond the length field are padding (RFC 2865 §3).
	p, err := Parse(append(append([]byte{}, good...), 9, 9, 9))
	if err != nil || len(p) != 26 {
		t.Fatalf("padding: len %d err %v", len(p), err)
	}
}

func TestUserPasswordMatchesLayeh(t *testing.T) {
	secret, auth := []byte("nas-secret"), bytes.Repeat([]byte{0xa5}, 16)
	for _, pw := range []string{"x", "exactly16bytes!!", "a password longer than sixteen bytes, up to 128"} {
		enc := EncryptUserPassword(nil, []byte(pw), secret, auth)
		ref, err := radius.NewUserPassword([]byte(pw), secret, auth)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, ref) {
			t.Fatalf("%q: encrypt differs from layeh", pw)
		}
		dec, err := DecryptUserPassword(nil, enc, secret, auth)
		if err != nil || string(bytes.TrimRight(dec, "\x00")) != pw {
			t.Fatalf("%q: decrypt = %q, %v", pw, dec, err)
		}
	}
}

func TestSaltedMatchesLayeh(t *testing.T) {
	secret, auth := []byte("upstream"), bytes.Repeat([]byte{0x3c}, 16)
	salt := [2]byte{0x81, 0x02}
	for _, pw := range []string{"", "k", "0123456789abcdef0123456789abcdef"} {
		enc := EncryptSalted(nil, []byte(pw), salt, secret, auth)
		ref, err := radius.NewTunnelPassword([]byte(pw), salt[:], secret, auth)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, ref) {
			t.Fatalf("%q: encrypt differs from layeh:\n%x\n%x", pw, enc, ref)
		}
		dec, err := DecryptSalted(nil, enc, secret, auth)
		if err != nil || string(dec) != pw {
			t.Fatalf("%q: decrypt = %q, %v", pw, dec, err)
		}
	}
}

// refMA is an independent Message-Authenticator computation (RFC 3579 §3.2).
func refMA(p []byte, maOff int, auth, secret []byte) []byte {
	c := append([]byte{}, p...)
	copy(c[4:20], auth)
	for i := range 16 {
		c[maOff+i] = 0
	}
	h := hmac.New(md5.New, secret)
	h.Write(c)
	return h.Sum(nil)
}

func TestSignAndCheck(t *testing.T) {
	secret := []byte("s3cret")
	auth := bytes.Repeat([]byte{7}, 16)
	b := New(nil, CodeAccessRequest, 9, auth)
	b.AddMA()
	b.AddString(AttrUserName, "alice")
	req, err := b.Finish(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := CheckRequestMA(req, secret); got != MAValid {
		t.Fatalf("request MA = %v", got)
	}
	if want := refMA(req, 22, auth, secret); !bytes.Equal(want, req[22:38]) {
		t.Fatal("request MA differs from reference")
	}
	if CheckRequestMA(req, []byte("wrong")) != MAInvalid {
		t.Fatal("wrong secret accepted")
	}

	rb := NewResponse(nil, req, CodeAccessAccept)
	rb.AddString(AttrReplyMessage, "hi")
	resp, err := rb.Finish(secret, req.Authenticator())
	if err != nil {
		t.Fatal(err)
	}
	if !radius.IsAuthenticResponse(resp, req, secret) {
		t.Fatal("layeh rejects our response authenticator")
	}
	if !CheckResponseAuthenticator(resp, req.Authenticator(), secret) || CheckResponseMA(resp, req.Authenticator(), secret) != MAValid {
		t.Fatal("response does not verify")
	}
	if resp[20] != AttrMessageAuthenticator {
		t.Fatal("Message-Authenticator is not the first attribute")
	}

	ab := New(nil, CodeAccountingRequest, 3, nil)
	ab.AddUint32(AttrAcctStatusType, 1)
	ab.AddMA()
	acct, _ := ab.Finish(secret, nil)
	if !radius.IsAuthenticRequest(acct, secret) || !CheckRequestAuthenticator(acct, secret) {
		t.Fatal("accounting authenticator")
	}
	if CheckRequestMA(acct, secret) != MAValid {
		t.Fatal("accounting MA")
	}
}

func TestForwardRoundTrip(t *testing.T) {
	nasSecret, upSecret := []byte("nas-secret"), []byte("radsec")
	nasAuth := bytes.Repeat([]byte{1}, 16)
	// A NAS request with a password, an EAP-Message, a vendor attribute and the NAS's own Proxy-State.
	lp := radius.New(radius.CodeAccessRequest, nasSecret)
	copy(lp.Authenticator[:], nasAuth)
	lp.Identifier = 42
	rfc2865.UserName_SetString(lp, "bob")
	rfc2865.UserPassword_SetString(lp, "hunter2")
	lp.Add(79, radius.Attribute{2, 1, 0, 5, 1})
	vsa, _ := radius.NewVendorSpecific(9, radius.Attribute{1, 7, 'a', '=', 'b', 'c', 'd'})
	lp.Add(26, vsa)
	lp.Add(33, radius.Attribute("nas-ps"))
	raw, _ := lp.Encode()
	req := mustParse(t, raw)

	upAuth := bytes.Repeat([]byte{2}, 16)
	k := &Rekey{FromSecret: nasSecret, ToSecret: upSecret}
	up, err := ForwardRequest(nil, req, k, 200, upAuth, []byte("mx1"))
	if err != nil {
		t.Fatal(err)
	}
	if up.ID() != 200 || up[20] != AttrMessageAuthenticator || CheckRequestMA(up, upSecret) != MAValid {
		t.Fatal("upstream header or MA wrong")
	}
	lu, err := radius.Parse(up, upSecret)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := rfc2865.UserPassword_LookupString(lu); pw != "hunter2" {
		t.Fatalf("re-encrypted password = %q", pw)
	}
	if eap, _ := up.Attr(79); !bytes.Equal(eap, []byte{2, 1, 0, 5, 1}) {
		t.Fatal("EAP-Message changed")
	}
	if v, _ := up.Attr(26); !bytes.Equal(v, vsa) {
		t.Fatal("VSA changed")
	}
	var states [][]byte
	for it := up.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == AttrProxyState {
			states = append(states, v)
		}
	}
	if len(states) != 2 || string(states[0]) != "nas-ps" || string(states[1]) != "mx1" {
		t.Fatalf("Proxy-State = %q", states)
	}

	// The upstream answers with MPPE keys and a Tunnel-Password, echoing both Proxy-States.
	lr := radius.New(radius.CodeAccessAccept, upSecret)
	lr.Identifier = 200
	lr.Add(33, radius.Attribute("nas-ps"))
	sendKey := bytes.Repeat([]byte{0x11}, 32)
	recvKey := bytes.Repeat([]byte{0x22}, 32)
	encSend := EncryptSalted(nil, sendKey, [2]byte{0x80, 1}, upSecret, upAuth)
	encRecv := EncryptSalted(nil, recvKey, [2]byte{0x80, 2}, upSecret, upAuth)
	ms := append(binary.BigEndian.AppendUint32(nil, VendorMicrosoft), 16, byte(2+len(encSend)))
	ms = append(ms, encSend...)
	ms = append(ms, 17, byte(2+len(encRecv)))
	ms = append(ms, encRecv...)
	lr.Add(26, ms)
	tp, _ := radius.NewTunnelPassword([]byte("tunnelpw"), []byte{0x85, 0x55}, upSecret, upAuth)
	lr.Add(69, append([]byte{1}, tp...))
	lr.Add(33, radius.Attribute("mx1"))
	rraw, _ := lr.Encode()
	copy(rraw[4:20], upAuth) // Encode computes against the packet's own authenticator; redo against upAuth
	Sign(rraw, upSecret, upAuth)
	resp := mustParse(t, rraw)
	if !CheckResponseAuthenticator(resp, upAuth, upSecret) {
		t.Fatal("fixture response authenticator")
	}

	k2 := &Rekey{FromSecret: upSecret, FromAuth: upAuth, ToSecret: nasSecret}
	out, err := ForwardResponse(nil, resp, k2, req, []byte("mx1"))
	if err != nil {
		t.Fatal(err)
	}
	if out.ID() != 42 || out[20] != AttrMessageAuthenticator {
		t.Fatal("response header")
	}
	if !radius.IsAuthenticResponse(out, req, nasSecret) || CheckResponseMA(out, nasAuth, nasSecret) != MAValid {
		t.Fatal("NAS cannot verify the response")
	}
	var ps [][]byte
	var gotSend, gotRecv []byte
	for it := out.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		switch typ {
		case AttrProxyState:
			ps = append(ps, v)
		case AttrVendorSpecific:
			SplitVSA(v, func(s VSA) {
				d, err := DecryptSalted(nil, s.Value, nasSecret, nasAuth)
				if err != nil {
					t.Fatal(err)
				}
				if s.Type == 16 {
					gotSend = d
				} else {
					gotRecv = d
				}
			})
		case AttrTunnelPassword:
			pw, _, err := radius.TunnelPassword(v[1:], nasSecret, nasAuth)
			if err != nil || string(pw) != "tunnelpw" || v[0] != 1 {
				t.Fatalf("Tunnel-Password = %q, %v", pw, err)
			}
		}
	}
	if len(ps) != 1 || string(ps[0]) != "nas-ps" {
		t.Fatalf("Proxy-State after strip = %q", ps)
	}
	if !bytes.Equal(gotSend, sendKey) || !bytes.Equal(gotRecv, recvKey) {
		t.Fatal("MPPE keys not re-keyed to the NAS secret")
	}

	// A reply without our Proxy-State is still converted but flagged.
	lr2 := radius.New(radius.CodeAccessReject, upSecret)
	lr2.Identifier = 200
	r2, _ := lr2.Encode()
	Sign(r2, upSecret, upAuth)
	if _, err := ForwardResponse(nil, mustParse(t, r2), &Rekey{FromSecret: upSecret, FromAuth: upAuth, ToSecret: nasSecret}, req, []byte("mx1")); !errors.Is(err, ErrProxyState) {
		t.Fatalf("missing Proxy-State: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{1, 7, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 6, 'a', 'b', 'c', 'd'})
	f.Add([]byte{4, 1, 0, 38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 80, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	secret := []byte("s")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		// Everything the front door does with an accepted packet must be safe.
		CheckRequestMA(p, secret)
		CheckRequestAuthenticator(p, secret)
		for it := p.Attrs(); ; {
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ == AttrVendorSpecific {
				SplitVSA(v, func(VSA) {})
			}
		}
		k := &Rekey{FromSecret: secret, ToSecret: []byte("t")}
		if up, err := ForwardRequest(nil, p, k, 1, make([]byte, 16), []byte("ps")); err == nil {
			if _, err := Parse(up); err != nil {
				t.Fatalf("ForwardRequest produced an invalid packet: %v", err)
			}
		}
		k2 := &Rekey{FromSecret: secret, FromAuth: make([]byte, 16), ToSecret: []byte("t")}
		if out, err := ForwardResponse(nil, p, k2, p, []byte("ps")); err == nil || errors.Is(err, ErrProxyState) {
			if _, perr := Parse(out); perr != nil {
				t.Fatalf("ForwardResponse produced an invalid packet: %v", perr)
			}
		}
	})
}

// TestMessageAuthenticatorLongSecret: secrets longer than the MD5 block are hashed first (RFC 2104).
func TestMessageAuthenticatorLongSecret(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 100)
	auth := bytes.Repeat([]byte{3}, 16)
	b := New(nil, CodeAccessRequest, 1, auth)
	b.AddMA()
	b.AddString(AttrUserName, "x")
	p, _ := b.Finish(secret, nil)
	if want := refMA(p, 20+2, auth, secret); !bytes.Equal(want, p[22:38]) {
		t.Fatal("Message-Authenticator with a long secret differs from crypto/hmac")
	}
}

func BenchmarkForwardRequest(b *testing.B) {
	nas, up := []byte("nas-secret"), []byte("radsec")
	auth := bytes.Repeat([]byte{1}, 16)
	rb := New(nil, CodeAccessRequest, 1, auth)
	rb.AddMA()
	rb.AddString(AttrUserName, "alice")
	rb.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("password"), nas, auth))
	rb.AddString(AttrCallingStationID, "02-00-00-00-00-01")
	req, _ := rb.Finish(nas, nil)
	dst := make([]byte, 0, MaxLen)
	b.ReportAllocs()
	for b.Loop() {
		k := Rekey{FromSecret: nas, ToSecret: up}
		if _, err := ForwardRequest(dst, req, &k, 2, auth, []byte("12345678")); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMABRequest is a MAB-sized Access-Request with Message-Authenticator, signed with secret.
func benchMABRequest(secret []byte) Packet {
	auth := bytes.Repeat([]byte{1}, 16)
	rb := New(nil, CodeAccessRequest, 1, auth)
	rb.AddMA()
	rb.AddString(AttrUserName, "02:00:00:00:00:01")
	rb.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("02:00:00:00:00:01"), secret, auth))
	rb.AddString(AttrCallingStationID, "02-00-00-00-00-01")
	rb.AddString(AttrNASIdentifier, "bench-switch-01")
	p, _ := rb.Finish(secret, nil)
	return p
}

// BenchmarkMessageAuthenticator is one HMAC-MD5 over a MAB-sized Access-Request (RFC 3579 §3.2),
// which every proxied request costs four times (checked, signed upstream, checked, signed back).
func BenchmarkMessageAuthenticator(b *testing.B) {
	secret := []byte("bench-nas-secret")
	p := benchMABRequest(secret)
	b.ReportAllocs()
	for b.Loop() {
		if CheckRequestMA(p, secret) != MAValid {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkResponseAuthenticator is the MD5 Response Authenticator check of a reply (RFC 2865 §3).
func BenchmarkResponseAuthenticator(b *testing.B) {
	secret := []byte("radsec")
	auth := bytes.Repeat([]byte{1}, 16)
	rb := New(nil, CodeAccessRequest, 1, auth)
	rb.AddMA()
	req, _ := rb.Finish(secret, nil)
	r := NewResponse(nil, req, CodeAccessAccept)
	r.AddMA()
	r.AddString(AttrUserName, "02:00:00:00:00:01")
	resp, _ := r.Finish(secret, auth)
	b.ReportAllocs()
	for b.Loop() {
		if !CheckResponseAuthenticator(resp, auth, secret) {
			b.Fatal("invalid")
		}
	}
}

// TestMAKey: a secret's key schedule gives the Message-Authenticator the secret gives, for secrets
// shorter than, as long as and longer than the MD5 block (RFC 2104 §2), in checks and in signing.
func TestMAKey(t *testing.T) {
	for _, n := range []int{1, 16, 63, 64, 65, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			secret := bytes.Repeat([]byte{'k'}, n)
			secret[0] = byte(n)
			k := NewMAKey(secret)
			auth := bytes.Repeat([]byte{7}, AuthLen)
			rb := New(nil, CodeAccessRequest, 9, auth)
			rb.AddMA()
			rb.AddString(AttrUserName, "02:00:00:00:00:01")
			rb.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("pw"), secret, auth))
			req, err := rb.Finish(secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			if CheckRequestMAKey(req, k) != MAValid {
				t.Fatal("request signed with the secret does not check with its key schedule")
			}
			if want := refMA(req, maOffsetOf(req), auth, secret); !bytes.Equal(want, req[maOffsetOf(req):maOffsetOf(req)+AuthLen]) {
				t.Fatal("Message-Authenticator differs from crypto/hmac")
			}
			bad := bytes.Clone(req)
			bad[len(bad)-1] ^= 1
			if CheckRequestMAKey(Packet(bad), k) != MAInvalid {
				t.Fatal("altered request checks")
			}
			// Forwarding signs with the key schedule exactly as with the secret alone.
			other := []byte("upstream-secret")
			plain, err := ForwardRequest(nil, req, &Rekey{FromSecret: secret, ToSecret: other}, 3, auth, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			keyed, err := ForwardRequest(nil, req, &Rekey{FromSecret: secret, ToSecret: other, ToMAKey: NewMAKey(other)}, 3, auth, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, keyed) {
				t.Fatal("forwarded request signed with the key schedule differs")
			}
			r := NewResponse(nil, req, CodeAccessAccept)
			r.AddMA()
			r.AddString(AttrReplyMessage, "ok")
			resp, err := r.Finish(secret, auth)
			if err != nil {
				t.Fatal(err)
			}
			if CheckResponseMAKey(resp, auth, k) != MAValid || CheckResponseMA(resp, auth, secret) != MAValid {
				t.Fatal("response does not check with the key schedule")
			}
			r = NewResponse(nil, req, CodeAccessAccept)
			r.AddMA()
			r.AddString(AttrReplyMessage, "ok")
			if keyed, err := r.FinishKey(secret, k, auth); err != nil || !bytes.Equal(keyed, resp) {
				t.Fatalf("response signed with the key schedule differs: %v", err)
			}
			if CheckResponseMAKey(resp, bytes.Repeat([]byte{8}, AuthLen), k) != MAInvalid {
				t.Fatal("response checks against another request's authenticator")
			}
		})
	}
}

func maOffsetOf(p Packet) int { return p.maOffset() }

// BenchmarkMessageAuthenticatorKey is BenchmarkMessageAuthenticator with the secret's key schedule.
func BenchmarkMessageAuthenticatorKey(b *testing.B) {
	secret := []byte("bench-nas-secret")
	p := benchMABRequest(secret)
	k := NewMAKey(secret)
	b.ReportAllocs()
	for b.Loop() {
		if CheckRequestMAKey(p, k) != MAValid {
			b.Fatal("invalid")
		}
	}
}
