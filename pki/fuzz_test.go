package pki

import (
	"bytes"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// seedInputs adds committed files (throw-away test keys) as seeds: seeds
// must be the same in every fuzz worker process, so nothing is generated.
func seedInputs(f *testing.F) {
	for _, name := range []string{"seed-chain.pem", "show-rsa-server.pem", "seed-ec-pkcs8.pem", "seed-ec-sec1.pem", "seed-rsa-pkcs1.pem"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if b, _ := pem.Decode(data); b != nil {
			f.Add(b.Bytes) // DER form
		}
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
}

// FuzzParseCertificates: LoadCertificates' decoder never panics, and what
// it accepts re-encodes to the same certificates.
func FuzzParseCertificates(f *testing.F) {
	seedInputs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err != nil {
			return
		}
		again, err := ParseCertificates(EncodeCertificates(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("round trip: %v (%d vs %d)", err, len(again), len(certs))
		}
		for i := range certs {
			if !certs[i].Equal(again[i]) {
				t.Fatal("round trip changed a certificate")
			}
			_ = Describe(certs[i])
		}
	})
}

// FuzzParseKey: LoadKey's decoder never panics; an accepted key re-encodes
// (PKCS#8) to the same key.
func FuzzParseKey(f *testing.F) {
	seedInputs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			return
		}
		enc, err := EncodeKey(k)
		if err != nil {
			t.Fatalf("encode accepted key: %v", err)
		}
		k2, err := ParseKey(enc)
		if err != nil || !publicKeysEqual(k.Public(), k2.Public()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzSAN: the subjectAltName codec (with UPN otherNames) round-trips.
func FuzzSAN(f *testing.F) {
	der, _ := marshalSAN(SANs{DNSNames: []string{"a.example"}, Emails: []string{"u@x"}, IPAddresses: []net.IP{net.ParseIP("::1"), net.ParseIP("127.0.0.1")}, URIs: []string{"urn:x"}, UPNs: []string{"u@corp"}})
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSAN(data)
		if err != nil {
			return
		}
		enc, err := marshalSAN(s)
		if err != nil {
			t.Fatalf("marshal parsed SAN: %v", err)
		}
		s2, err := parseSAN(enc)
		if err != nil || !slices.Equal(s.DNSNames, s2.DNSNames) || !slices.Equal(s.UPNs, s2.UPNs) || !slices.Equal(s.URIs, s2.URIs) || len(s.IPAddresses) != len(s2.IPAddresses) {
			t.Fatalf("round trip: %v %+v %+v", err, s, s2)
		}
	})
}

// FuzzDecodeCRL: the CRL decoder (PEM or DER) never panics.
func FuzzDecodeCRL(f *testing.F) {
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeCRL(data)
	})
}

func TestSANRoundTrip(t *testing.T) {
	in := SANs{DNSNames: []string{"a.example", "b.example"}, Emails: []string{"u@x"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1").To4(), net.ParseIP("2001:db8::1")},
		URIs: []string{"urn:uuid:1"}, UPNs: []string{"üser@corp.example", "x@y"}}
	der, err := marshalSAN(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseSAN(der)
	if err != nil {
		t.Fatal(err)
	}
	if in.String() != out.String() {
		t.Errorf("round trip:\n%s\n%s", in.String(), out.String())
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x02, 0x87, 0x01}, {0x31, 0x00}} {
		if _, err := parseSAN(bad); err == nil {
			t.Errorf("accepted %x", bad)
		}
	}
}

// TestLoadFileLimits: oversized files are refused before parsing.
func TestLoadFileLimits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.pem")
	must(t, os.WriteFile(p, bytes.Repeat([]byte("A"), MaxFileSize+1), 0o600))
	if _, err := LoadCertificates(p); err == nil {
		t.Error("oversized file accepted")
	}
}
