package packet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// hide encrypts plain as attribute def would carry it, under secret and auth.
func hide(t testing.TB, def AttrDef, plain []byte, salt byte, secret, auth []byte) []byte {
	t.Helper()
	var v []byte
	if def.Tagged {
		v = append(v, 1)
	}
	switch def.Encrypt {
	case SchemeUserPassword:
		return EncryptUserPassword(v, plain, secret, auth)
	case SchemeSalted:
		return EncryptSalted(v, plain, [2]byte{0x80, salt}, secret, auth)
	}
	t.Fatalf("%s: scheme %s", def.Name, def.Encrypt)
	return nil
}

// reveal decrypts value v of def under secret and auth.
func reveal(t testing.TB, def AttrDef, v, secret, auth []byte) []byte {
	t.Helper()
	if def.Tagged {
		if len(v) < 1 || v[0] != 1 {
			t.Fatalf("%s: tag lost: %x", def.Name, v)
		}
		v = v[1:]
	}
	var plain []byte
	var err error
	switch def.Encrypt {
	case SchemeUserPassword:
		plain, err = DecryptUserPassword(nil, v, secret, auth)
		plain = bytes.TrimRight(plain, "\x00")
	case SchemeSalted:
		plain, err = DecryptSalted(nil, v, secret, auth)
	}
	if err != nil {
		t.Fatalf("%s: %v", def.Name, err)
	}
	return plain
}

// attrValue returns the value of def in p (a vendor attribute inside its Vendor-Specific).
func attrValue(p Packet, def AttrDef) ([]byte, bool) {
	var got []byte
	found := false
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return got, found
		}
		switch {
		case def.Vendor == 0 && typ == def.Code:
			got, found = v, true
		case def.Vendor != 0 && typ == AttrVendorSpecific:
			SplitVSA(v, func(s VSA) {
				if s.Vendor == def.Vendor && s.Type == def.Code {
					got, found = s.Value, true
				}
			})
		}
	}
}

// TestRekeyEveryEncryptedAttr drives every attribute the built-in dictionary marks encrypt= through
// both directions of the proxy path: each arrives at the next hop decrypting to the original under
// that hop's secret and authenticator, whatever the vendor (Aruba-MPSK-Passphrase as much as the
// MS-MPPE keys).
func TestRekeyEveryEncryptedAttr(t *testing.T) {
	nasSecret, upSecret := []byte("nas-secret"), []byte("upstream-secret")
	nasAuth, upAuth := bytes.Repeat([]byte{1}, AuthLen), bytes.Repeat([]byte{2}, AuthLen)
	defs := Builtin().Encrypted()
	if len(defs) < 6 {
		t.Fatalf("Encrypted() lists %d attributes", len(defs))
	}
	for _, def := range defs {
		t.Run(def.Name, func(t *testing.T) {
			plain := []byte("secret value of " + def.Name)[:16]
			if def.Name == "Aruba-MPSK-Passphrase" {
				plain = []byte("correct horse battery staple")
			}
			// Request direction: NAS → upstream.
			b := New(nil, CodeAccessRequest, 7, nasAuth)
			b.AddString(AttrUserName, "bob")
			if def.Code != AttrUserPassword || def.Vendor != 0 {
				b.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("pw"), nasSecret, nasAuth))
			}
			add := func(b *Builder, v []byte) {
				if def.Vendor == 0 {
					b.Add(def.Code, v)
				} else {
					b.AddVSA(def.Vendor, def.Code, v)
				}
			}
			add(&b, hide(t, def, plain, 9, nasSecret, nasAuth))
			req, err := b.Finish(nasSecret, nil)
			if err != nil {
				t.Fatal(err)
			}
			up, err := ForwardRequest(nil, req, &Rekey{FromSecret: nasSecret, ToSecret: upSecret}, 200, upAuth, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			v, ok := attrValue(up, def)
			if !ok {
				t.Fatal("attribute lost upstream")
			}
			if got := reveal(t, def, v, upSecret, upAuth); !bytes.Equal(got, plain) {
				t.Fatalf("upstream decrypts %q, want %q", got, plain)
			}

			// Reply direction: upstream → NAS.
			rb := New(nil, CodeAccessAccept, 200, nil)
			add(&rb, hide(t, def, plain, 3, upSecret, upAuth))
			rb.Add(AttrProxyState, []byte("ps"))
			resp, err := rb.Finish(upSecret, upAuth)
			if err != nil {
				t.Fatal(err)
			}
			out, err := ForwardResponse(nil, resp, &Rekey{FromSecret: upSecret, FromAuth: upAuth, ToSecret: nasSecret}, req, []byte("ps"))
			if err != nil {
				t.Fatal(err)
			}
			if !CheckResponseAuthenticator(out, nasAuth, nasSecret) {
				t.Fatal("NAS cannot verify the response")
			}
			v, ok = attrValue(out, def)
			if !ok {
				t.Fatal("attribute lost on the way to the NAS")
			}
			if got := reveal(t, def, v, nasSecret, nasAuth); !bytes.Equal(got, plain) {
				t.Fatalf("NAS decrypts %q, want %q", got, plain)
			}
		})
	}
}

// TestRekeyVSAMixed: in one Vendor-Specific carrying a hidden and a plain sub-attribute, the plain
// one is copied byte for byte and the hidden one re-keyed; a Vendor-Specific of a vendor with no
// encrypt= attribute is copied whole, even when its layout is not RFC 2865 §5.26's.
func TestRekeyVSAMixed(t *testing.T) {
	from, to := []byte("from"), []byte("to")
	fromAuth, toAuth := bytes.Repeat([]byte{3}, AuthLen), bytes.Repeat([]byte{4}, AuthLen)
	enc := EncryptSalted(nil, []byte("mpsk"), [2]byte{0x80, 1}, from, fromAuth)
	aruba := []byte{0, 0, 0x39, 0xe7} // 14823
	aruba = append(aruba, 1, 2+5)
	aruba = append(aruba, "guest"...) // Aruba-User-Role
	aruba = append(aruba, 44, byte(2+len(enc)))
	aruba = append(aruba, enc...)
	odd := []byte{0, 0, 0, 9, 0xff, 0xff, 0xff} // Cisco, malformed sub-attribute
	var dst []byte
	k := &Rekey{FromSecret: from, FromAuth: fromAuth, ToSecret: to, ToAuth: toAuth}
	var err error
	if dst, err = k.appendAttr(dst, AttrVendorSpecific, aruba); err != nil {
		t.Fatal(err)
	}
	if dst, err = k.appendAttr(dst, AttrVendorSpecific, odd); err != nil {
		t.Fatal(err)
	}
	if int(dst[1]) != 2+len(aruba) || !bytes.Equal(dst[2:6+2+5], aruba[:4+2+5]) {
		t.Fatalf("Aruba VSA header or plain sub-attribute changed: %x", dst)
	}
	if got, err := DecryptSalted(nil, dst[2+4+7+2:2+len(aruba)], to, toAuth); err != nil || string(got) != "mpsk" {
		t.Fatalf("Aruba-MPSK-Passphrase = %q, %v", got, err)
	}
	if rest := dst[2+len(aruba):]; !bytes.Equal(rest[2:], odd) {
		t.Fatalf("malformed Cisco VSA changed: %x", rest)
	}
}

// TestRekeyLoadedDictionary: an operator's dictionary that marks an attribute encrypt=2 gets it
// re-keyed; one that marks it encrypt=3 (not implemented) fails the packet instead of forwarding a
// value the next hop decrypts to garbage.
func TestRekeyLoadedDictionary(t *testing.T) {
	d, err := Builtin().Load(writeDict(t, "dictionary.acme", `VENDOR Acme 99999
BEGIN-VENDOR Acme
ATTRIBUTE Acme-Secret 3 octets encrypt=2
ATTRIBUTE Acme-Ascend 4 octets encrypt=3
END-VENDOR Acme
`))
	if err != nil {
		t.Fatal(err)
	}
	from, to := []byte("from"), []byte("to")
	auth := bytes.Repeat([]byte{5}, AuthLen)
	vsa := func(code uint8, v []byte) []byte {
		return append([]byte{0, 1, 0x86, 0x9f, code, byte(2 + len(v))}, v...)
	}
	enc := EncryptSalted(nil, []byte("acme"), [2]byte{0x80, 1}, from, auth)
	k := &Rekey{FromSecret: from, FromAuth: auth, ToSecret: to, ToAuth: auth, Dict: d}
	out, err := k.appendAttr(nil, AttrVendorSpecific, vsa(3, enc))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecryptSalted(nil, out[8:], to, auth); err != nil || string(got) != "acme" {
		t.Fatalf("Acme-Secret = %q, %v", got, err)
	}
	builtin := &Rekey{FromSecret: from, FromAuth: auth, ToSecret: to, ToAuth: auth}
	if out, _ := builtin.appendAttr(nil, AttrVendorSpecific, vsa(3, enc)); !bytes.Equal(out[2:], vsa(3, enc)) {
		t.Fatal("the built-in dictionary re-keyed an attribute it does not know")
	}
	if _, err := k.appendAttr(nil, AttrVendorSpecific, vsa(4, bytes.Repeat([]byte{1}, 16))); !errors.Is(err, ErrRekeyScheme) {
		t.Fatalf("encrypt=3: %v, want ErrRekeyScheme", err)
	}
}

// TestRekeyedAttrsMatchRadclient: radclient, acting as the NAS, decrypts Aruba-MPSK-Passphrase,
// Tunnel-Password and MS-MPPE-Recv-Key in a reply that ForwardResponse re-keyed from an upstream
// secret to the NAS's, and prints the originals.
func TestRekeyedAttrsMatchRadclient(t *testing.T) {
	nasSecret, upSecret := []byte("testing123"), []byte("upstream-only")
	upAuth := bytes.Repeat([]byte{0x5a}, AuthLen)
	key := []byte("0123456789abcdef")
	received := radclientReply(t, nasSecret, func(req Packet) ([]byte, error) {
		// The upstream's reply, hidden under its own secret and the upstream request's authenticator.
		b := New(nil, CodeAccessAccept, 1, nil)
		b.AddVSA(14823, 44, EncryptSalted(nil, []byte("psk-passphrase"), [2]byte{0x80, 3}, upSecret, upAuth))
		b.Add(AttrTunnelPassword, EncryptSalted([]byte{1}, []byte("tunnel-secret"), [2]byte{0x80, 4}, upSecret, upAuth))
		b.AddVSA(VendorMicrosoft, 17, EncryptSalted(nil, key, [2]byte{0x80, 5}, upSecret, upAuth))
		up, err := b.Finish(upSecret, upAuth)
		if err != nil {
			return nil, err
		}
		return ForwardResponse(nil, up, &Rekey{FromSecret: upSecret, FromAuth: upAuth, ToSecret: nasSecret}, req, nil)
	})
	for _, want := range []string{
		"Aruba-MPSK-Passphrase = 0x" + hex.EncodeToString([]byte("psk-passphrase")),
		`Tunnel-Password:1 = "tunnel-secret"`,
		"MS-MPPE-Recv-Key = 0x" + hex.EncodeToString(key),
	} {
		if !strings.Contains(received, "\t"+want+"\n") {
			t.Errorf("radclient did not print %s:\n%s", want, received)
		}
	}
}
