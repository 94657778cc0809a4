package packet

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"testing"
)

// eapPacket builds an EAP packet with a correct Length field.
func eapPacket(code, id uint8, typ int, data []byte) []byte {
	b := []byte{code, id, 0, 0}
	if typ >= 0 {
		b = append(b, byte(typ))
	}
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// withEAP builds an Access-Request carrying chunks as EAP-Message attributes, each as given.
func withEAP(tb testing.TB, chunks ...[]byte) Packet {
	tb.Helper()
	b := New(nil, CodeAccessRequest, 1, bytes.Repeat([]byte{7}, AuthLen))
	b.AddMA()
	b.AddString(AttrUserName, "eap")
	for _, c := range chunks {
		b.Add(AttrEAPMessage, c)
	}
	p, err := b.Finish([]byte("s"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return mustParse(tb, p)
}

func TestCheckEAP(t *testing.T) {
	identity := eapPacket(EAPResponse, 1, 1, []byte("user@example.com"))
	big := eapPacket(EAPResponse, 2, 13, bytes.Repeat([]byte{0x16}, 600)) // EAP-TLS, 3 attributes
	lenPlus := append([]byte(nil), identity...)
	binary.BigEndian.PutUint16(lenPlus[2:], uint16(len(identity)+1))
	lenMinus := append([]byte(nil), identity...)
	binary.BigEndian.PutUint16(lenMinus[2:], uint16(len(identity)-1))
	tests := []struct {
		name   string
		chunks [][]byte
		want   error
	}{
		{"no EAP-Message", nil, nil},
		{"EAP-Start", [][]byte{{}}, nil},
		{"identity response", [][]byte{identity}, nil},
		{"fragmented over three attributes", [][]byte{big[:253], big[253:506], big[506:]}, nil},
		{"fragmented unevenly", [][]byte{big[:10], big[10:263], big[263:500], big[500:]}, nil},
		{"success", [][]byte{eapPacket(EAPSuccess, 3, -1, nil)}, nil},
		{"failure", [][]byte{eapPacket(EAPFailure, 3, -1, nil)}, nil},
		{"request", [][]byte{eapPacket(EAPRequest, 3, 1, nil)}, nil},
		{"expanded type", [][]byte{eapPacket(EAPResponse, 4, 254, []byte{0, 0, 0, 0, 0, 0, 3})}, nil},
		{"first attribute shorter than the header", [][]byte{identity[:3], identity[3:]}, ErrEAPShort},
		{"three octets", [][]byte{{2, 1, 0}}, ErrEAPShort},
		{"length above attributes", [][]byte{lenPlus}, ErrEAPLength},
		{"length below attributes", [][]byte{lenMinus}, ErrEAPLength},
		{"fragment missing", [][]byte{big[:253], big[506:]}, ErrEAPLength},
		{"code 0", [][]byte{eapPacket(0, 1, 1, []byte("x"))}, ErrEAPCode},
		{"code 5", [][]byte{eapPacket(5, 1, 1, []byte("x"))}, ErrEAPCode},
		{"response without type", [][]byte{eapPacket(EAPResponse, 1, -1, nil)}, ErrEAPNoType},
		{"type 0", [][]byte{eapPacket(EAPResponse, 1, 0, []byte("x"))}, ErrEAPType},
		{"expanded type cut short", [][]byte{eapPacket(EAPResponse, 4, 254, []byte{0, 0, 0, 0, 0, 0})}, ErrEAPExpanded},
		{"empty attribute after data", [][]byte{identity, {}}, ErrEAPEmptyChunk},
		{"two empty attributes", [][]byte{{}, {}}, ErrEAPEmptyChunk},
		{"empty attribute first", [][]byte{{}, identity}, ErrEAPEmptyChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := withEAP(t, tt.chunks...)
			err := CheckEAP(p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckEAP = %v, want %v", err, tt.want)
			}
			if err != nil && !errors.Is(err, ErrEAP) {
				t.Fatalf("%v does not wrap ErrEAP", err)
			}
			if got := refCheckEAP(tt.chunks); (got == nil) != (tt.want == nil) {
				t.Fatalf("reference check says %v", got)
			}
			if err := CheckRequest(p); !errors.Is(err, tt.want) {
				t.Fatalf("CheckRequest = %v, want %v", err, tt.want)
			}
		})
	}
}

// refCheckEAP is CheckEAP written the obvious way, over the attribute values already split out.
func refCheckEAP(chunks [][]byte) error {
	if len(chunks) == 0 || (len(chunks) == 1 && len(chunks[0]) == 0) {
		return nil
	}
	if len(chunks[0]) < 4 {
		return ErrEAPShort
	}
	var eap []byte
	for _, c := range chunks {
		if len(c) == 0 {
			return ErrEAPEmptyChunk
		}
		eap = append(eap, c...)
	}
	if int(binary.BigEndian.Uint16(eap[2:])) != len(eap) {
		return ErrEAPLength
	}
	switch eap[0] {
	case 1, 2:
		if len(eap) < 5 {
			return ErrEAPNoType
		}
		if eap[4] == 0 {
			return ErrEAPType
		}
		if eap[4] == 254 && len(eap) < 12 {
			return ErrEAPExpanded
		}
	case 3, 4:
	default:
		return ErrEAPCode
	}
	return nil
}

// TestEAPRoundTrip: AddEAP splits an EAP packet into EAP-Message attributes that EAPMessage puts
// back together, whatever its size.
func TestEAPRoundTrip(t *testing.T) {
	for _, n := range []int{0, 5, 252, 253, 254, 506, 507, 1400, 3900} {
		var eap []byte
		if n > 0 {
			eap = eapPacket(EAPResponse, 9, 13, bytes.Repeat([]byte{0xab}, n-5))
		}
		b := New(nil, CodeAccessRequest, 1, bytes.Repeat([]byte{1}, AuthLen))
		b.AddMA()
		b.AddEAP(eap)
		raw, err := b.Finish([]byte("s"), nil)
		if err != nil {
			t.Fatalf("%d octets: %v", n, err)
		}
		p := mustParse(t, raw)
		chunks := 0
		for it := p.Attrs(); ; {
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ == AttrEAPMessage {
				chunks++
				if len(v) > 253 {
					t.Fatalf("%d octets: attribute of %d", n, len(v))
				}
			}
		}
		if want := max(1, (n+252)/253); chunks != want {
			t.Fatalf("%d octets in %d attributes, want %d", n, chunks, want)
		}
		got, err := EAPMessage(nil, p)
		if err != nil || !bytes.Equal(got, eap) || got == nil {
			t.Fatalf("%d octets: EAPMessage = %d octets, %v", n, len(got), err)
		}
	}
	if got, err := EAPMessage(nil, withEAP(t)); got != nil || err != nil {
		t.Fatalf("no EAP-Message: %v %v", got, err)
	}
}

func TestCheckRequestAttributes(t *testing.T) {
	build := func(n int, typ uint8) Packet {
		b := New(nil, CodeAccessRequest, 1, bytes.Repeat([]byte{1}, AuthLen))
		b.AddMA()
		for range n - 1 {
			b.AddString(typ, "x")
		}
		p, err := b.Finish([]byte("s"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return mustParse(t, p)
	}
	if err := CheckRequest(build(MaxAttrs, AttrClass)); err != nil {
		t.Fatalf("%d attributes: %v", MaxAttrs, err)
	}
	if err := CheckRequest(build(MaxAttrs+1, AttrClass)); !errors.Is(err, ErrTooManyAttrs) {
		t.Fatalf("%d attributes: %v", MaxAttrs+1, err)
	}
	if err := CheckRequest(build(2, 0)); !errors.Is(err, ErrAttrZero) {
		t.Fatalf("attribute 0: %v", err)
	}
}

// chapResponse is the CHAP response of RFC 1994 §4.1 that RFC 2865 §5.3 carries in CHAP-Password.
func chapResponse(ident uint8, password string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{ident})
	h.Write([]byte(password))
	h.Write(challenge)
	return append([]byte{ident}, h.Sum(nil)...)
}

// TestForwardRequestCHAP: CHAP-Password with no CHAP-Challenge was computed over the NAS's Request
// Authenticator; the forwarded copy has another one, so it gains CHAP-Challenge = the original
// authenticator, and the upstream's check (RFC 2865 §5.3) succeeds on it.
func TestForwardRequestCHAP(t *testing.T) {
	nasAuth := bytes.Repeat([]byte{0x42}, AuthLen)
	upAuth := bytes.Repeat([]byte{0x99}, AuthLen)
	own := []byte("0123456789abcdef")
	build := func(code Code, chap bool, challenge []byte) Packet {
		b := New(nil, code, 3, nasAuth)
		if code == CodeAccountingRequest {
			b = New(nil, code, 3, nil)
		}
		b.AddMA()
		b.AddString(AttrUserName, "aabbccddeeff")
		if chap {
			c := nasAuth
			if challenge != nil {
				c = challenge
			}
			b.Add(AttrCHAPPassword, chapResponse(5, "aabbccddeeff", c))
		}
		if challenge != nil {
			b.Add(AttrCHAPChallenge, challenge)
		}
		p, err := b.Finish([]byte("nas"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return mustParse(t, p)
	}
	tests := []struct {
		name          string
		req           Packet
		wantChallenge []byte // nil: no CHAP-Challenge in the forwarded copy
	}{
		{"CHAP without challenge", build(CodeAccessRequest, true, nil), nasAuth},
		{"CHAP with its own challenge", build(CodeAccessRequest, true, own), own},
		{"PAP", build(CodeAccessRequest, false, nil), nil},
		{"accounting", build(CodeAccountingRequest, false, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &Rekey{FromSecret: []byte("nas"), ToSecret: []byte("radsec")}
			out, err := ForwardRequest(nil, tt.req, k, 9, upAuth, []byte("12345678"))
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != ForwardLen(tt.req, 8) {
				t.Fatalf("forwarded %d octets, ForwardLen says %d", len(out), ForwardLen(tt.req, 8))
			}
			var challenges [][]byte
			for it := out.Attrs(); ; {
				typ, v, ok := it.Next()
				if !ok {
					break
				}
				if typ == AttrCHAPChallenge {
					challenges = append(challenges, v)
				}
			}
			if tt.wantChallenge == nil {
				if len(challenges) != 0 {
					t.Fatalf("CHAP-Challenge added: %x", challenges)
				}
				return
			}
			if len(challenges) != 1 || !bytes.Equal(challenges[0], tt.wantChallenge) {
				t.Fatalf("CHAP-Challenge = %x, want one of %x", challenges, tt.wantChallenge)
			}
			// The upstream's check: the response over the challenge it sees.
			pw, _ := out.Attr(AttrCHAPPassword)
			if !bytes.Equal(pw, chapResponse(pw[0], "aabbccddeeff", challenges[0])) {
				t.Fatal("CHAP-Password does not verify against the forwarded challenge")
			}
		})
	}
}

// TestForwardLenBoundary: the largest request ForwardLen admits forwards to exactly MaxLen octets,
// and one octet more cannot be forwarded.
func TestForwardLenBoundary(t *testing.T) {
	auth := bytes.Repeat([]byte{5}, AuthLen)
	// build returns a request of exactly n octets, padded with Class attributes.
	build := func(n int, ma, chap bool) Packet {
		b := New(nil, CodeAccessRequest, 1, auth)
		if ma {
			b.AddMA()
		}
		if chap {
			b.Add(AttrCHAPPassword, chapResponse(1, "pw", auth))
		}
		for r := n - b.Len(); r > 0; r = n - b.Len() {
			v := r - 2 // the last attribute takes what is left
			if r > 255 {
				v = min(253, r-4) // leave at least an empty attribute's worth
			}
			b.Add(AttrClass, make([]byte, v))
		}
		p, err := b.Finish([]byte("s"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != n {
			t.Fatalf("built %d octets, want %d", len(p), n)
		}
		return mustParse(t, p)
	}
	for _, tc := range []struct {
		name     string
		ma, chap bool
		growth   int
	}{
		{"with Message-Authenticator", true, false, 10},
		{"without Message-Authenticator", false, false, 28},
		{"CHAP without challenge", true, true, 28},
		{"CHAP without Message-Authenticator", false, true, 46},
	} {
		t.Run(tc.name, func(t *testing.T) {
			largest := MaxLen - tc.growth
			p := build(largest, tc.ma, tc.chap)
			if got := ForwardLen(p, 8); got != MaxLen {
				t.Fatalf("ForwardLen(%d octets) = %d, want %d", largest, got, MaxLen)
			}
			k := &Rekey{FromSecret: []byte("s"), ToSecret: []byte("t")}
			out, err := ForwardRequest(nil, p, k, 1, auth, []byte("12345678"))
			if err != nil || len(out) != MaxLen {
				t.Fatalf("largest: %d octets, %v", len(out), err)
			}
			p = build(largest+1, tc.ma, tc.chap)
			if ForwardLen(p, 8) <= MaxLen {
				t.Fatal("one octet more still fits")
			}
			if _, err := ForwardRequest(nil, p, k, 1, auth, []byte("12345678")); !errors.Is(err, ErrAttrTooLong) {
				t.Fatalf("one octet more: %v", err)
			}
		})
	}
}

// FuzzCheckEAP splits arbitrary bytes into EAP-Message attributes: CheckEAP must agree with the
// reference check, and whatever it accepts EAPMessage returns whole.
func FuzzCheckEAP(f *testing.F) {
	f.Add(eapPacket(EAPResponse, 1, 1, []byte("user")), uint8(0))
	f.Add(eapPacket(EAPResponse, 2, 13, bytes.Repeat([]byte{1}, 400)), uint8(200))
	f.Add(eapPacket(EAPSuccess, 2, -1, nil), uint8(1))
	f.Add(eapPacket(EAPResponse, 2, 254, []byte{0, 0, 0, 0, 0, 0, 1}), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{2, 1, 0, 9, 1}, uint8(2))
	f.Fuzz(func(t *testing.T, eap []byte, split uint8) {
		if len(eap) > 3000 {
			return
		}
		// split chooses the attribute size: 1..253 octets.
		size := int(split)%253 + 1
		var chunks [][]byte
		for rest := eap; len(rest) > 0; {
			n := min(size, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if len(eap) == 0 && split%2 == 1 {
			chunks = [][]byte{{}} // EAP-Start
		}
		p := withEAP(t, chunks...)
		err := CheckEAP(p)
		if ref := refCheckEAP(chunks); (err == nil) != (ref == nil) {
			t.Fatalf("CheckEAP = %v, reference = %v", err, ref)
		}
		got, err2 := EAPMessage(nil, p)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("CheckEAP = %v, EAPMessage = %v", err, err2)
		}
		if err == nil && len(chunks) > 0 && !bytes.Equal(got, eap) {
			t.Fatal("EAPMessage did not return the EAP packet")
		}
	})
}

// FuzzCheckRequest runs CheckRequest over arbitrary datagrams that parse: it never panics.
func FuzzCheckRequest(f *testing.F) {
	f.Add([]byte(withEAP(f, eapPacket(EAPResponse, 1, 1, []byte("u")))))
	f.Add([]byte(withEAP(f, []byte{2, 1, 0, 200, 1})))
	f.Add([]byte(withEAP(f, []byte{})))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		_ = CheckRequest(p)
		_ = ForwardLen(p, 8)
	})
}
