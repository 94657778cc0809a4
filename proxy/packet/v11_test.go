package packet

import (
	"bytes"
	"errors"
	"testing"
)

// assert11Header checks a RADIUS/1.1 header (RFC 9765, "RADIUS/1.1 Packet Format"): Reserved-1
// zero, the Token, Reserved-2 zero, and no Message-Authenticator anywhere.
func assert11Header(t testing.TB, p Packet, token uint32) {
	t.Helper()
	if p[offID] != 0 {
		t.Fatalf("Reserved-1 = %d, want 0", p[offID])
	}
	if p.Token() != token {
		t.Fatalf("Token = %#x, want %#x", p.Token(), token)
	}
	if !bytes.Equal(p[offReserved:HeaderLen], make([]byte, 12)) {
		t.Fatalf("Reserved-2 = %x, want zeros", p[offReserved:HeaderLen])
	}
	if p.Has(AttrMessageAuthenticator) {
		t.Fatal("Message-Authenticator on a RADIUS/1.1 hop")
	}
	if _, err := Parse(p); err != nil {
		t.Fatalf("not a well-formed packet: %v", err)
	}
}

// TestV11EveryEncryptedAttr drives every attribute the built-in dictionary marks encrypt= over a
// RADIUS/1.1 hop both ways, in the one re-keying pass mxedge's proxy path makes: NAS (MD5 with the
// NAS secret) → 1.1 (the plain value, RFC 9765 "Obfuscated Attributes") → classic next hop, and
// back. The plain value on the 1.1 hop is exactly the data: no padding, salt or length octet.
func TestV11EveryEncryptedAttr(t *testing.T) {
	nasSecret, nextSecret := []byte("nas-secret"), []byte("next-secret")
	nasAuth, nextAuth := bytes.Repeat([]byte{1}, AuthLen), bytes.Repeat([]byte{3}, AuthLen)
	for _, def := range Builtin().Encrypted() {
		t.Run(def.Name, func(t *testing.T) {
			plain := []byte("secret of " + def.Name)
			if len(plain) > 30 {
				plain = plain[:30]
			}
			add := func(b *Builder, v []byte) {
				if def.Vendor == 0 {
					b.Add(def.Code, v)
				} else {
					b.AddVSA(def.Vendor, def.Code, v)
				}
			}
			clearForm := plain
			if def.Tagged {
				clearForm = append([]byte{1}, plain...)
			}
			// Request: NAS → 1.1 hop → classic.
			b := New(nil, CodeAccessRequest, 7, nasAuth)
			b.AddMA()
			b.AddString(AttrUserName, "bob")
			add(&b, hide(t, def, plain, 9, nasSecret, nasAuth))
			req, err := b.Finish(nasSecret, nil)
			if err != nil {
				t.Fatal(err)
			}
			up, err := ForwardRequest(nil, req, &Rekey{FromSecret: nasSecret, ToClear: true}, 200, nil, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			SetToken(up, 0xdeadbeef)
			assert11Header(t, up, 0xdeadbeef)
			if v, ok := attrValue(up, def); !ok || !bytes.Equal(v, clearForm) {
				t.Fatalf("on the 1.1 hop %s = %q, want %q", def.Name, v, clearForm)
			}
			next, err := ForwardRequest(nil, up, &Rekey{FromClear: true, ToSecret: nextSecret}, 9, nextAuth, nil)
			if err != nil {
				t.Fatal(err)
			}
			if CheckRequestMA(next, nextSecret) != MAValid {
				t.Fatal("classic copy of the 1.1 request has no valid Message-Authenticator")
			}
			v, ok := attrValue(next, def)
			if !ok {
				t.Fatal("attribute lost")
			}
			if got := reveal(t, def, v, nextSecret, nextAuth); !bytes.Equal(got, plain) {
				t.Fatalf("next hop decrypts %q, want %q", got, plain)
			}

			// Response: 1.1 hop (plain) → NAS, hidden with the NAS secret and signed.
			rb := New(nil, CodeAccessAccept, 0, nil)
			add(&rb, clearForm)
			rb.Add(AttrProxyState, []byte("ps"))
			rb.AddMA() // received on a 1.1 hop: ignored, never trusted
			resp11 := rb.b
			SetToken(resp11, 0xdeadbeef)
			binaryLen(resp11)
			out, err := ForwardResponse(nil, Packet(resp11), &Rekey{FromClear: true, ToSecret: nasSecret}, req, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			if !CheckResponseAuthenticator(out, nasAuth, nasSecret) || CheckResponseMA(out, nasAuth, nasSecret) != MAValid {
				t.Fatal("NAS cannot verify the response")
			}
			if out.ID() != 7 || out.Has(AttrProxyState) {
				t.Fatalf("response id %d, Proxy-State kept %v", out.ID(), out.Has(AttrProxyState))
			}
			v, ok = attrValue(out, def)
			if !ok {
				t.Fatal("attribute lost on the way to the NAS")
			}
			if got := reveal(t, def, v, nasSecret, nasAuth); !bytes.Equal(got, plain) {
				t.Fatalf("NAS decrypts %q, want %q", got, plain)
			}

			// And a classic response turned into 1.1 (a listener answering a 1.1 peer).
			cb := New(nil, CodeAccessAccept, 9, nil)
			cb.AddMA()
			add(&cb, hide(t, def, plain, 4, nextSecret, nextAuth))
			cresp, err := cb.Finish(nextSecret, nextAuth)
			if err != nil {
				t.Fatal(err)
			}
			r11, err := ForwardResponseTo(nil, cresp, &Rekey{FromSecret: nextSecret, FromAuth: nextAuth, ToClear: true}, 0, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			SetToken(r11, 42)
			assert11Header(t, r11, 42)
			if v, ok := attrValue(r11, def); !ok || !bytes.Equal(v, clearForm) {
				t.Fatalf("1.1 response %s = %q, want %q", def.Name, v, clearForm)
			}
		})
	}
}

// binaryLen writes the length field of a packet built by hand.
func binaryLen(p []byte) { p[offLength], p[offLength+1] = byte(len(p)>>8), byte(len(p)) }

// TestV11CHAPChallenge: a classic CHAP request whose challenge is its Request Authenticator gains
// CHAP-Challenge on the 1.1 hop (RFC 9765, "CHAP-Challenge"); one that has CHAP-Challenge keeps
// it alone; CHAP-Password itself is unchanged. From a 1.1 hop nothing is added: the header has no
// authenticator to take a challenge from.
func TestV11CHAPChallenge(t *testing.T) {
	auth := bytes.Repeat([]byte{0x5a}, AuthLen)
	chap := append([]byte{1}, bytes.Repeat([]byte{0xc4}, 16)...)
	b := New(nil, CodeAccessRequest, 1, auth)
	b.AddString(AttrUserName, "bob")
	b.Add(AttrCHAPPassword, chap)
	req, _ := b.Finish([]byte("s"), nil)
	up, err := ForwardRequest(nil, req, &Rekey{FromSecret: []byte("s"), ToClear: true}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := up.Attr(AttrCHAPChallenge); !ok || !bytes.Equal(v, auth) {
		t.Fatalf("CHAP-Challenge = %x, want the Request Authenticator %x", v, auth)
	}
	if v, _ := up.Attr(AttrCHAPPassword); !bytes.Equal(v, chap) {
		t.Fatalf("CHAP-Password changed: %x", v)
	}
	b = New(nil, CodeAccessRequest, 1, auth)
	b.Add(AttrCHAPPassword, chap)
	b.Add(AttrCHAPChallenge, []byte("0123456789abcdef"))
	req, _ = b.Finish([]byte("s"), nil)
	up, _ = ForwardRequest(nil, req, &Rekey{FromSecret: []byte("s"), ToClear: true}, 0, nil, nil)
	n := 0
	for it := up.Attrs(); ; {
		typ, _, ok := it.Next()
		if !ok {
			break
		}
		if typ == AttrCHAPChallenge {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d CHAP-Challenge attributes, want 1", n)
	}
	// From 1.1 without CHAP-Challenge: nothing invented.
	SetToken(up, 1)
	b = New(nil, CodeAccessRequest, 0, nil)
	b.Add(AttrCHAPPassword, chap)
	p11 := b.b
	binaryLen(p11)
	classic, err := ForwardRequest(nil, Packet(p11), &Rekey{FromClear: true, ToSecret: []byte("s")}, 3, auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	if classic.Has(AttrCHAPChallenge) {
		t.Fatal("CHAP-Challenge made up from a RADIUS/1.1 header")
	}
}

// TestV11UserPassword: on the 1.1 hop User-Password is the password without its NUL padding; one
// received there must be 1..128 octets (RFC 9765, "User-Password").
func TestV11UserPassword(t *testing.T) {
	secret, auth := []byte("nas"), bytes.Repeat([]byte{7}, AuthLen)
	b := New(nil, CodeAccessRequest, 1, auth)
	b.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("hunter2"), secret, auth))
	req, _ := b.Finish(secret, nil)
	up, err := ForwardRequest(nil, req, &Rekey{FromSecret: secret, ToClear: true}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := up.Attr(AttrUserPassword); string(v) != "hunter2" {
		t.Fatalf("User-Password on the 1.1 hop = %q", v)
	}
	for _, n := range []int{0, 129} {
		b := New(nil, CodeAccessRequest, 0, nil)
		b.Add(AttrUserPassword, bytes.Repeat([]byte("x"), n))
		p := b.b
		binaryLen(p)
		if _, err := ForwardRequest(nil, Packet(p), &Rekey{FromClear: true, ToSecret: secret}, 1, auth, nil); !errors.Is(err, ErrClearPasswordLength) {
			t.Errorf("%d-octet clear User-Password: err %v, want ErrClearPasswordLength", n, err)
		}
	}
}

// TestV11TunnelPasswordUntagged: a plain Tunnel-Password without a tag octet (RFC 2868 §3.3 lets
// tagged strings leave it out) reaches the classic hop with tag 0 and the whole value.
func TestV11TunnelPasswordUntagged(t *testing.T) {
	auth := bytes.Repeat([]byte{9}, AuthLen)
	b := New(nil, CodeAccessAccept, 0, nil)
	b.Add(AttrTunnelPassword, []byte("tunnelpw"))
	p := b.b
	binaryLen(p)
	b2 := New(nil, CodeAccessRequest, 4, auth)
	nasReq, _ := b2.Finish([]byte("nas"), nil)
	out, err := ForwardResponse(nil, Packet(p), &Rekey{FromClear: true, ToSecret: []byte("nas")}, nasReq, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := out.Attr(AttrTunnelPassword)
	if len(v) < 1 || v[0] != 0 {
		t.Fatalf("tag %x, want 0", v)
	}
	got, err := DecryptSalted(nil, v[1:], []byte("nas"), auth)
	if err != nil || string(got) != "tunnelpw" {
		t.Fatalf("decrypts to %q, %v", got, err)
	}
}

// TestV11Accounting: an Accounting-Request crosses a 1.1 hop with no authenticator, and the classic
// copy made from it carries the RFC 2866 digest under the next hop's secret.
func TestV11Accounting(t *testing.T) {
	b := New(nil, CodeAccountingRequest, 5, nil)
	b.AddString(AttrUserName, "bob")
	req, _ := b.Finish([]byte("nas"), nil)
	up, err := ForwardRequest(nil, req, &Rekey{FromSecret: []byte("nas"), ToClear: true}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	SetToken(up, 77)
	assert11Header(t, up, 77)
	classic, err := ForwardRequest(nil, up, &Rekey{FromClear: true, ToSecret: []byte("next")}, 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckRequestAuthenticator(classic, []byte("next")) {
		t.Fatal("classic Accounting-Request does not verify")
	}
}

// TestV11Token: Token and SetToken round-trip, and SetToken clears the reserved fields.
func TestV11Token(t *testing.T) {
	p := bytes.Repeat([]byte{0xff}, HeaderLen)
	SetToken(p, 0x01020304)
	if Packet(p).Token() != 0x01020304 || p[offID] != 0 || !bytes.Equal(p[offReserved:], make([]byte, 12)) {
		t.Fatalf("header %x", p)
	}
}

// FuzzV11 feeds arbitrary RADIUS/1.1 packets through both directions of the translation a RadSec
// listener makes (1.1 → classic, classic → 1.1): it never panics, what it builds is a well-formed
// packet, and a hidden attribute comes back to its plain value.
func FuzzV11(f *testing.F) {
	b := New(nil, CodeAccessRequest, 0, nil)
	b.Add(AttrUserPassword, []byte("hunter2"))
	b.Add(AttrTunnelPassword, []byte{1, 'p', 'w'})
	b.AddVSA(VendorMicrosoft, 16, []byte("0123456789abcdef0123456789abcdef"))
	b.AddMA()
	seed := b.b
	binaryLen(seed)
	f.Add([]byte(seed))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Parse(in)
		if err != nil {
			return
		}
		auth := bytes.Repeat([]byte{2}, AuthLen)
		classic, err := ForwardRequest(nil, p, &Rekey{FromClear: true, ToSecret: []byte("s")}, 1, auth, nil)
		if err != nil {
			return
		}
		if _, err := Parse(classic); err != nil {
			t.Fatalf("classic copy is malformed: %v", err)
		}
		back, err := ForwardRequest(nil, classic, &Rekey{FromSecret: []byte("s"), ToClear: true}, 0, nil, nil)
		if err != nil {
			t.Fatalf("classic copy does not convert back: %v", err)
		}
		if _, err := Parse(back); err != nil {
			t.Fatalf("round trip is malformed: %v", err)
		}
		if v, ok := p.Attr(AttrUserPassword); ok && bytes.IndexByte(v, 0) < 0 {
			if w, _ := back.Attr(AttrUserPassword); !bytes.Equal(v, w) {
				t.Fatalf("User-Password %q came back as %q", v, w)
			}
		}
	})
}

// BenchmarkForwardRequest11 is BenchmarkForwardRequest's request sent to a RADIUS/1.1 upstream:
// the password decrypted and written plain, nothing signed. Read against BenchmarkForwardRequest
// in the same run.
func BenchmarkForwardRequest11(b *testing.B) {
	nas := []byte("nas-secret")
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
		k := Rekey{FromSecret: nas, ToClear: true}
		p, err := ForwardRequest(dst, req, &k, 0, nil, []byte("12345678"))
		if err != nil {
			b.Fatal(err)
		}
		SetToken(p, 1)
	}
}

// BenchmarkForwardResponse11 is the reply direction: a plain 1.1 Access-Accept with a Tunnel-Password
// hidden for the NAS and signed, against BenchmarkForwardResponseClassic's re-keying of the same
// reply hidden under the upstream secret.
func BenchmarkForwardResponse11(b *testing.B) { benchResponse(b, true) }

// BenchmarkForwardResponseClassic: see BenchmarkForwardResponse11.
func BenchmarkForwardResponseClassic(b *testing.B) { benchResponse(b, false) }

func benchResponse(b *testing.B, v11 bool) {
	nas, up := []byte("nas-secret"), []byte("radsec")
	nasAuth, upAuth := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	qb := New(nil, CodeAccessRequest, 1, nasAuth)
	nasReq, _ := qb.Finish(nas, nil)
	rb := New(nil, CodeAccessAccept, 2, nil)
	if v11 {
		rb.Add(AttrTunnelPassword, []byte("\x01tunnel-secret"))
	} else {
		rb.AddMA()
		rb.Add(AttrTunnelPassword, append([]byte{1}, EncryptSalted(nil, []byte("tunnel-secret"), [2]byte{0x80, 1}, up, upAuth)...))
	}
	rb.Add(AttrProxyState, []byte("12345678"))
	resp, _ := rb.Finish(up, upAuth)
	dst := make([]byte, 0, MaxLen)
	b.ReportAllocs()
	for b.Loop() {
		k := Rekey{FromSecret: up, FromAuth: upAuth, ToSecret: nas, FromClear: v11}
		if _, err := ForwardResponse(dst, resp, &k, nasReq, []byte("12345678")); err != nil {
			b.Fatal(err)
		}
	}
}
