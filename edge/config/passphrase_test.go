package config_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
)

// opensslEncrypt writes an encrypted copy of the PEM key at in with openssl.
func opensslEncrypt(t *testing.T, in, form, pw string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), form+".key")
	args := map[string][]string{
		"pkcs8":  {"pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", in, "-out", out, "-passout", "pass:" + pw},
		"legacy": {"ec", "-aes256", "-in", in, "-out", out, "-passout", "pass:" + pw},
	}[form]
	if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, b)
	}
	return out
}

// TestKeyPassphraseFile: the local listener's key may be passphrase-protected in either form
// openssl writes, with the passphrase read from key_passphrase_file; without the file, or with the
// wrong passphrase, check names the field. The passphrase never prints.
func TestKeyPassphraseFile(t *testing.T) {
	lab := pkitest.Must(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "key.pass")
	badFile := filepath.Join(dir, "bad.pass")
	os.WriteFile(pwFile, []byte("s3cret-passphrase\n"), 0o600)
	os.WriteFile(badFile, []byte("wrong\n"), 0o600)
	pkcs8 := opensslEncrypt(t, lab.ServerKey, "pkcs8", "s3cret-passphrase")
	legacy := opensslEncrypt(t, lab.ServerKey, "legacy", "s3cret-passphrase")
	rest := "cache: {path: " + filepath.Join(lab.Dir, "c.db") + "}\nclients:\n  - {name: a, address: 192.0.2.1, secret: s}\nupstreams:\n  tls: {certificate: " +
		lab.ClientCert + ", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers:\n    - {name: u, address: 192.0.2.10}\n"
	doc := func(key, pass string) string {
		d := "survivability:\n  eap_tls:\n    certificate: " + lab.ServerCert + "\n    key: " + key + "\n    ca: " + lab.CAFile + "\n"
		if pass != "" {
			d += "    key_passphrase_file: " + pass + "\n"
		}
		return d + rest
	}
	for _, tt := range []struct {
		name, key, pass, want string
	}{
		{"pkcs8", pkcs8, pwFile, ""},
		{"legacy pem", legacy, pwFile, ""},
		{"plain key with a passphrase file", lab.ServerKey, pwFile, ""},
		{"no passphrase file", pkcs8, "", "m.yaml:4: survivability.eap_tls.key: " + pkcs8 + " is passphrase-protected: set survivability.eap_tls.key_passphrase_file"},
		{"legacy, no passphrase file", legacy, "", "survivability.eap_tls.key: " + legacy + " is passphrase-protected"},
		{"wrong passphrase", pkcs8, badFile, "m.yaml:6: survivability.eap_tls.key_passphrase_file: the passphrase in " + badFile + " does not decrypt"},
		{"missing passphrase file", pkcs8, filepath.Join(dir, "none"), "m.yaml:6: survivability.eap_tls.key_passphrase_file:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("m.yaml", []byte(doc(tt.key, tt.pass)))
			if tt.want != "" {
				if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := c.Built().Survival.EAPTLS
			if e.Certificate.PrivateKey == nil || e.KeyFile != tt.key || e.CertFile != lab.ServerCert {
				t.Fatalf("eap_tls built %+v", e)
			}
			var logs strings.Builder
			slog.New(slog.NewTextHandler(&logs, nil)).Info("built", "eap_tls", e.KeyPassword)
			if s := fmt.Sprintf("%v %s %+v", e.KeyPassword, e.KeyPassword, e) + logs.String(); strings.Contains(s, "s3cret") {
				t.Fatalf("the passphrase printed: %s", s)
			}
		})
	}
}
