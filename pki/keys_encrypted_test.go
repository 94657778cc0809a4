package pki

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEncryptedKeys reads keys openssl encrypted, in the forms operators
// bring with a private key password (docs/pki.md).
func TestEncryptedKeys(t *testing.T) {
	bin := opensslBin(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
	}{
		{"pkcs8 ec aes-256 pbkdf2-sha256", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-256-cbc", "-pass", "pass:s3cret"}},
		{"pkcs8 rsa aes-128", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes-128-cbc", "-pass", "pass:s3cret"}},
		{"legacy rsa aes-128", []string{"genrsa", "-aes128", "-traditional", "-passout", "pass:s3cret"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i))+".key")
			args := append(tt.args, "-out", p)
			if tt.args[0] == "genrsa" {
				args = append(args, "2048") // numbits last
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl: %v\n%s", err, out)
			}
			if _, err := LoadKey(p); !errors.Is(err, ErrEncryptedKey) {
				t.Errorf("LoadKey without password: %v", err)
			}
			k, err := LoadKeyWithPassword(p, []byte("s3cret"))
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			// Same key as openssl decrypts.
			plain, err := exec.Command(bin, "pkey", "-in", p, "-passin", "pass:s3cret").Output()
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseKey(plain)
			if err != nil {
				t.Fatal(err)
			}
			if !publicKeysEqual(k.Public(), want.Public()) {
				t.Error("decrypted another key")
			}
			if _, err := LoadKeyWithPassword(p, []byte("wrong")); !errors.Is(err, ErrBadPassword) {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
	if s := fmt.Sprintf("%v %s %#v", Password("x"), Password("x"), ReloaderOptions{KeyPassword: Password("hunter2")}); strings.Contains(s, "hunter2") {
		t.Errorf("password leaks: %s", s)
	}
	// A plain key with a password configured is fine.
	k, _ := GenerateKey(KeyECDSAP256)
	p := filepath.Join(dir, "plain.key")
	must(t, WriteKey(p, k, false))
	if _, err := LoadKeyWithPassword(p, []byte("unused")); err != nil {
		t.Errorf("plain key: %v", err)
	}
	raw, _ := os.ReadFile(p)
	if _, err := ParseKeyWithPassword(raw, nil); err != nil {
		t.Errorf("plain key, no password: %v", err)
	}
}

// FuzzParseKeyWithPassword: the encrypted-key decoder never panics.
func FuzzParseKeyWithPassword(f *testing.F) {
	seedInputs(f)
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgAAAAAAAAAAAICCAAwDAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEAAAAAAAAAAAAAAAAAAAAAAEQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseKeyWithPassword(data, []byte("pw"))
	})
}
