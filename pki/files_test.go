package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteLoadCertificates(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	leaf := issue(t, inter, IssueOptions{CommonName: "leaf", Usage: UsageServer})
	dir := t.TempDir()
	p := filepath.Join(dir, "chain.pem")
	if err := WriteCertificates(p, false, append([]*x509.Certificate{leaf.Cert}, leaf.Chain...)...); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != CertFileMode {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	got, err := LoadCertificates(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(leaf.Cert) || !got[1].Equal(inter.Cert) {
		t.Fatalf("loaded %d certs", len(got))
	}
	err = WriteCertificates(p, false, root.Cert)
	if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite without force: %v", err)
	}
	if err := WriteCertificates(p, true, root.Cert); err != nil {
		t.Fatal(err)
	}
	got, _ = LoadCertificates(p)
	if len(got) != 1 || !got[0].Equal(root.Cert) {
		t.Error("force did not overwrite")
	}
	// DER input.
	der := filepath.Join(dir, "leaf.der")
	os.WriteFile(der, leaf.Cert.Raw, 0o644)
	if got, err := LoadCertificates(der); err != nil || !got[0].Equal(leaf.Cert) {
		t.Errorf("DER: %v", err)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("dir has %d entries (temp files left?)", len(ents))
	}
	for _, bad := range []string{"", "garbage", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		f := filepath.Join(dir, "bad")
		os.WriteFile(f, []byte(bad), 0o644)
		if _, err := LoadCertificates(f); err == nil {
			t.Errorf("loaded certificates from %q", bad)
		}
	}
	if _, err := LoadCertificates(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestWriteLoadKey(t *testing.T) {
	dir := t.TempDir()
	for _, kt := range KeyTypes()[:4] {
		t.Run(string(kt), func(t *testing.T) {
			k, err := GenerateKey(kt)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, string(kt)+".key")
			if err := WriteKey(p, k, false); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v", st.Mode().Perm())
			}
			if err := WriteKey(p, k, false); !errors.Is(err, ErrExists) {
				t.Errorf("overwrite: %v", err)
			}
			forms := map[string][]byte{}
			pk8, _ := x509.MarshalPKCS8PrivateKey(k)
			forms["pkcs8-der"] = pk8
			switch kk := k.(type) {
			case *rsa.PrivateKey:
				d := x509.MarshalPKCS1PrivateKey(kk)
				forms["pkcs1-der"] = d
				forms["pkcs1-pem"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: d})
			case *ecdsa.PrivateKey:
				d, _ := x509.MarshalECPrivateKey(kk)
				forms["sec1-der"] = d
				// openssl ecparam -genkey writes EC PARAMETERS first.
				forms["sec1-pem"] = append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
					pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: d})...)
			}
			forms["written"], _ = os.ReadFile(p)
			for name, data := range forms {
				f := filepath.Join(dir, string(kt)+"."+name)
				os.WriteFile(f, data, 0o600)
				got, err := LoadKey(f)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if !publicKeysEqual(got.Public(), k.Public()) {
					t.Errorf("%s: different key", name)
				}
			}
		})
	}
	enc := filepath.Join(dir, "enc.key")
	os.WriteFile(enc, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600)
	if _, err := LoadKey(enc); !errors.Is(err, ErrEncryptedKey) {
		t.Errorf("encrypted: %v", err)
	}
	legacy := filepath.Join(dir, "legacy.key")
	os.WriteFile(legacy, []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	if _, err := LoadKey(legacy); !errors.Is(err, ErrEncryptedKey) {
		t.Errorf("legacy encrypted: %v", err)
	}
	certOnly := filepath.Join(dir, "cert.pem")
	os.WriteFile(certOnly, EncodeCertificates(newRoot(t, KeyECDSAP256).Cert), 0o600)
	if _, err := LoadKey(certOnly); !errors.Is(err, ErrNoKey) {
		t.Errorf("cert only: %v", err)
	}
}

func TestLoadKeyPair(t *testing.T) {
	root := newRoot(t, KeyECDSAP256)
	inter := newIntermediate(t, root)
	leaf := issue(t, inter, IssueOptions{CommonName: "leaf", Usage: UsageClient})
	other := issue(t, inter, IssueOptions{CommonName: "other", Usage: UsageClient})
	dir := t.TempDir()
	cp, kp, okp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "o.pem")
	must(t, WriteCertificates(cp, false, leaf.Cert, inter.Cert))
	must(t, WriteKey(kp, leaf.Key, false))
	must(t, WriteKey(okp, other.Key, false))
	tc, err := LoadKeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificate) != 2 || tc.Leaf == nil || !tc.Leaf.Equal(leaf.Cert) {
		t.Errorf("chain %d leaf %v", len(tc.Certificate), tc.Leaf != nil)
	}
	if _, err := LoadKeyPair(cp, okp); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("mismatch: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
