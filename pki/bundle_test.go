package pki

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// encryptKey has openssl protect keyPEM with passphrase pw, in the two forms operators bring:
// PKCS#8 (`openssl pkcs8 -topk8 -v2 aes-256-cbc`) and legacy PEM (`openssl ec -aes256`, which
// writes Proc-Type: 4,ENCRYPTED).
func encryptKey(t testing.TB, keyPEM []byte, form, pw string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.key"), filepath.Join(dir, "out.key")
	if err := os.WriteFile(in, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	switch form {
	case "pkcs8":
		args = []string{"pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", in, "-out", out, "-passout", "pass:" + pw}
	case "legacy":
		args = []string{"ec", "-aes256", "-in", in, "-out", out, "-passout", "pass:" + pw}
	}
	if b, err := exec.Command(opensslBin(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if marker := map[string]string{"pkcs8": "BEGIN ENCRYPTED PRIVATE KEY", "legacy": "Proc-Type: 4,ENCRYPTED"}[form]; !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("openssl %s wrote no %q:\n%s", form, marker, b)
	}
	return b
}

func TestParseServerBundle(t *testing.T) {
	now := time.Now()
	ca, err := NewCA(CAOptions{CommonName: "org CA"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA(CAOptions{CommonName: "another CA"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(c *CA, o IssueOptions) (chain, key []byte) {
		t.Helper()
		if o.CommonName == "" {
			o.CommonName = "radius.site.example"
		}
		is, err := c.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		k, err := EncodeKey(is.Key)
		if err != nil {
			t.Fatal(err)
		}
		return EncodeCertificates(is.Cert), k
	}
	caPEM := EncodeCertificates(ca.Cert)
	good, goodKey := issue(ca, IssueOptions{Usage: UsageServer})
	client, clientKey := issue(ca, IssueOptions{Usage: UsageClient})
	foreign, foreignKey := issue(other, IssueOptions{Usage: UsageServer})
	expired, expiredKey := issue(ca, IssueOptions{Usage: UsageServer, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	_, otherKey := issue(ca, IssueOptions{Usage: UsageServer})
	leafAsCA, _ := issue(ca, IssueOptions{Usage: UsageServer})

	for _, tt := range []struct {
		name           string
		ca, chain, key []byte
		pw             Password
		want           error
	}{
		{"good", caPEM, good, goodKey, nil, nil},
		{"pkcs8 encrypted key", caPEM, good, encryptKey(t, goodKey, "pkcs8", "s3cret"), Password("s3cret"), nil},
		{"legacy encrypted key", caPEM, good, encryptKey(t, goodKey, "legacy", "s3cret"), Password("s3cret"), nil},
		{"wrong passphrase", caPEM, good, encryptKey(t, goodKey, "pkcs8", "s3cret"), Password("nope"), ErrBadPassword},
		{"key of another certificate", caPEM, good, otherKey, nil, ErrKeyMismatch},
		{"client EKU only", caPEM, client, clientKey, nil, ErrWrongUsage},
		{"signed by another CA", caPEM, foreign, foreignKey, nil, ErrUnknownAuthority},
		{"expired", caPEM, expired, expiredKey, nil, ErrExpired},
		{"ca is a leaf", leafAsCA, good, goodKey, nil, ErrInvalid},
		{"no ca", nil, good, goodKey, nil, ErrNoCertificate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseServerBundle(tt.ca, tt.chain, tt.key, tt.pw, now)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(b.CAs) != 1 || b.Certificate.Leaf == nil || b.Certificate.Leaf.Subject.CommonName != "radius.site.example" {
					t.Fatalf("bundle %+v", b)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}
