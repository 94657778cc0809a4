package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/install"
	"mxedge/pki/pkitest"
)

// labConfig returns the shipped default with what it lists as "must be set" uncommented and its
// paths pointed at a lab PKI.
func labConfig(t *testing.T) (string, *pkitest.Lab) {
	t.Helper()
	lab := pkitest.Must(t)
	secret := filepath.Join(lab.Dir, "core-sw1.secret")
	if err := os.WriteFile(secret, []byte("a-long-random-lab-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer(
		"/var/lib/mxedge/edge.crt", lab.ClientCert, "/var/lib/mxedge/edge.key", lab.ClientKey,
		"/var/lib/mxedge/ca.pem", lab.CAFile, "/etc/mxedge/secrets/core-sw1", secret,
	)
	// The cache directory must exist; the default's does not here.
	doc := uncomment(string(install.DefaultConfig)) + "cache:\n  path: " + filepath.Join(lab.Dir, "cache.db") + "\n"
	return r.Replace(doc), lab
}

// uncomment removes "# " from the YAML lines of the shipped default, from its first commented key
// on: what an operator does to configure it.
func uncomment(doc string) string {
	lines := strings.Split(doc, "\n")
	on := false
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l, "# ")
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, "clients:") {
			on = true
		}
		if on && (strings.HasPrefix(rest, " ") || strings.HasSuffix(rest, ":")) {
			lines[i] = rest
		}
	}
	return strings.Join(lines, "\n")
}

// TestShippedDefault: the packaged default serves nobody until edited (no live client, so "not
// configured"), and what it lists as "must be set", uncommented, is a valid configuration that
// keeps the BlastRADIUS defences and every other default.
func TestShippedDefault(t *testing.T) {
	dir := t.TempDir()
	shipped := filepath.Join(dir, "mxedge.yaml")
	if err := os.WriteFile(shipped, install.DefaultConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.CheckConfigured(shipped); !errors.Is(err, config.ErrNotConfigured) {
		t.Fatalf("shipped default: %v, want not configured", err)
	}
	doc, _ := labConfig(t)
	c, err := config.Parse("mxedge.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("the shipped default, uncommented, does not validate:\n%v\n%s", err, doc)
	}
	edited := filepath.Join(dir, "edited.yaml")
	if err := os.WriteFile(edited, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.CheckConfigured(edited); err != nil {
		t.Fatalf("edited default: %v", err)
	}
	b := c.Built()
	if len(b.Clients) != 1 || b.Clients[0].Name != "core-sw1" || !b.Clients[0].RequireMessageAuthenticator || !b.Clients[0].LimitProxyState {
		t.Fatalf("clients: %+v", b.Clients)
	}
	up := b.Pool.Upstreams[0]
	if up.Host != "radsec.nac.mist.com" || up.Port != 2083 || string(up.Secret) != "radsec" || up.DeadAfter != 2*time.Second {
		t.Fatalf("upstream: %+v", up)
	}
	// Unset in the file: the router's own default, reject (proxy.RouterOptions).
	if b.Server.RequestTimeout != 4*time.Second || b.Router.NoUpstream != "" {
		t.Fatalf("defaults: %+v %+v", b.Server, b.Router)
	}
}

// TestCheckConfigured: a file serves somebody once it sets a NAS client, an upstream or a RadSec
// peer; comments, an empty file and settings alone do not.
func TestCheckConfigured(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc  string
		configured bool
	}{
		{"empty", "", false},
		{"comments", "# clients:\n#   - name: a\n", false},
		{"settings only", "log:\n  level: debug\nclients: []\n", false},
		{"client", "clients:\n  - {name: a, address: 192.0.2.1, secret: s}\n", true},
		{"upstream", "upstreams:\n  servers: [{name: u, address: 192.0.2.10}]\n", true},
		{"radsec peer", "radsec:\n  peers: [{name: p, address: 10.0.0.0/8}]\n", true},
		// Broken files are left to Load, which names file, line and field.
		{"yaml error", "clients: [\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			err := config.CheckConfigured(path)
			if got := err == nil; got != tc.configured {
				t.Fatalf("CheckConfigured = %v, want configured %v", err, tc.configured)
			}
			if err != nil && (!errors.Is(err, config.ErrNotConfigured) || errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), path)) {
				t.Errorf("error %v: want ErrNotConfigured (not ErrInvalid) naming %s", err, path)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	_, lab := labConfig(t)
	doc := "cache: {path: " + filepath.Join(lab.Dir, "c.db") + "}\nclients:\n  - {name: a, address: 192.0.2.1, secret: s}\nupstreams:\n  tls: {certificate: " + lab.ClientCert +
		", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers:\n    - {name: u, address: 192.0.2.10}\n"
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Built()
	if got := b.Server.AuthAddrs; len(got) != 2 || got[0] != "0.0.0.0:1812" {
		t.Fatalf("auth defaults %v", got)
	}
	if b.Server.DuplicateWindow != 10*time.Second || b.Pool.Upstreams[0].Port != 2083 || b.Clients[0].Vendor != "generic" {
		t.Fatal("defaults not applied")
	}
	if b.Cache.TTL != 7*24*time.Hour || b.Cache.MaxEntries != 1000000 || b.Cache.Protect != 24*time.Hour {
		t.Fatalf("cache defaults: ttl %v, max entries %d, protect %v", b.Cache.TTL, b.Cache.MaxEntries, b.Cache.Protect)
	}
	if !b.Clients[0].LimitProxyState || !b.Clients[0].RequireMessageAuthenticator {
		t.Fatal("BlastRADIUS defences must default on")
	}
	if u := b.Pool.Upstreams[0]; u.StallAfter != 500*time.Millisecond || u.VerifySRVTarget {
		t.Fatalf("upstream defaults: stall_after %v, verify_srv_target %v", u.StallAfter, u.VerifySRVTarget)
	}
	doc = strings.Replace(doc, "servers:\n    - {name: u, address: 192.0.2.10}", "stall_after: 250ms\n  servers:\n    - {name: u, address: 192.0.2.10, srv: true, verify_srv_target: true}", 1)
	if c, err = config.Parse("m.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if u := c.Built().Pool.Upstreams[0]; u.StallAfter != 250*time.Millisecond || !u.VerifySRVTarget {
		t.Fatalf("stall_after %v, verify_srv_target %v", u.StallAfter, u.VerifySRVTarget)
	}
}

func TestErrorsNameFileLineAndField(t *testing.T) {
	_, lab := labConfig(t)
	tlsBlock := "  tls: {certificate: " + lab.ClientCert + ", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key", "log:\n  level: info\n  colour: blue\n", []string{"m.yaml:3:", `unknown key "colour"`}},
		{"bad cidr", "clients:\n  - name: a\n    address: 10.0.0.1/33\n    secret: s\n", []string{"m.yaml:3: clients[0].address:", "not a CIDR"}},
		{"host bits", "clients:\n  - name: a\n    address: 10.0.0.1/24\n    secret: s\n", []string{"m.yaml:3: clients[0].address:", "10.0.0.0/24"}},
		{"missing secret", "clients:\n  - name: a\n    address: 10.0.0.1\n", []string{"m.yaml:2: clients[0].secret: required"}},
		{"duplicate client", "clients:\n  - {name: a, address: 10.0.0.1, secret: s}\n  - {name: b, address: 10.0.0.1/32, secret: s}\n", []string{"m.yaml:3: clients[1].address:", `also client "a"`}},
		{"bad vendor", "clients:\n  - {name: a, address: 10.0.0.1, secret: s, vendor: acme}\n", []string{"clients[0].vendor:", `"acme"`}},
		{"bad duration", "request_timeout: soon\n", []string{"m.yaml:1:", "not a duration"}},
		{"timeout range", "request_timeout: 2m\n", []string{"m.yaml:1: request_timeout:", "outside"}},
		{"no upstreams", "upstreams:\n  mode: failover\n", []string{"upstreams.servers: at least one upstream is required"}},
		{"bad mode", "upstreams:\n  mode: random\n" + tlsBlock + "  servers: [{name: u, address: 192.0.2.1}]\n", []string{"m.yaml:2: upstreams.mode:"}},
		{"missing cert file", "upstreams:\n  tls: {certificate: /nonexistent.pem, key: /nonexistent.key, ca: " + lab.CAFile + "}\n  servers: [{name: u, address: 192.0.2.1}]\n", []string{"m.yaml:2: upstreams.tls.certificate:", "nonexistent"}},
		{"cert key mismatch", "upstreams:\n  tls: {certificate: " + lab.ClientCert + ", key: " + lab.ServerKey + ", ca: " + lab.CAFile + "}\n  servers: [{name: u, address: 192.0.2.1}]\n", []string{"upstreams.tls.certificate:"}},
		{"bad listen", "listen:\n  auth: [\"1812\"]\n", []string{"m.yaml:2: listen.auth[0]:"}},
		{"not a mapping", "- a\n- b\n", []string{"m.yaml:1:", "mapping"}},
		{"yaml syntax", "clients: [\n", []string{"m.yaml"}},
		{"stall range", "upstreams:\n  stall_after: 10ms\n" + tlsBlock + "  servers: [{name: u, address: 192.0.2.1}]\n", []string{"upstreams.stall_after:", "outside"}},
		{"cache ttl too long", "cache:\n  ttl: 31d\n", []string{"m.yaml:2: cache.ttl:", "1d..30d"}},
		{"cache ttl too short", "cache:\n  ttl: 12h\n", []string{"m.yaml:2: cache.ttl:"}},
		{"cache max entries", "cache:\n  max_entries: -3\n", []string{"m.yaml:2: cache.max_entries:", "1..100000000"}},
		{"cache protect", "cache:\n  ttl: 2d\n  protect: 3d\n", []string{"m.yaml:3: cache.protect:", "1m..cache.ttl"}},
		{"spool size", "survivability:\n  spool: {max_bytes: lots}\n", []string{"m.yaml:2: survivability.spool.max_bytes:", "512MiB"}},
		{"failmode", "survivability:\n  failmode: maybe\n", []string{"m.yaml:2: survivability.failmode:"}},
		{"vlan range", "survivability:\n  default_mab_vlan: \"5000\"\n", []string{"m.yaml:2: survivability.default_mab_vlan:", "1..4094"}},
		{"cache dir missing", "cache:\n  path: /nonexistent/dir/cache.db\n", []string{"m.yaml:2: cache.path:", "/nonexistent/dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("m.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestHardFailNeedsSource: revocation: hard-fail with no CRL file and no OCSP is an error naming the
// file, line and field, so `mxedge check` refuses it rather than run with revocation off; with a
// source it is accepted.
func TestHardFailNeedsSource(t *testing.T) {
	_, lab := labConfig(t)
	crl := filepath.Join(t.TempDir(), "org.crl")
	if err := os.WriteFile(crl, []byte("placeholder"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "survivability:\n  eap_tls:\n    certificate: " + lab.ServerCert +
		"\n    key: " + lab.ServerKey + "\n    ca: " + lab.CAFile + "\n"
	for _, tt := range []struct {
		name, extra string
		want        string // "" = valid
	}{
		{"hard-fail alone", "    revocation: hard-fail\n", "m.yaml:6: survivability.eap_tls.revocation: hard-fail needs a revocation source"},
		{"hard-fail with empty lists", "    crl_files: []\n    ocsp: false\n    revocation: hard-fail\n", "m.yaml:8: survivability.eap_tls.revocation:"},
		{"hard-fail with ocsp", "    ocsp: true\n    revocation: hard-fail\n", ""},
		{"hard-fail with a crl file", "    crl_files: [" + crl + "]\n    revocation: hard-fail\n", ""},
		{"soft-fail alone", "    revocation: soft-fail\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rest := "cache: {path: " + filepath.Join(lab.Dir, "c.db") + "}\nclients:\n  - {name: a, address: 192.0.2.1, secret: s}\nupstreams:\n  tls: {certificate: " +
				lab.ClientCert + ", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers:\n    - {name: u, address: 192.0.2.10}\n"
			_, err := config.Parse("m.yaml", []byte(base+tt.extra+rest))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSecretFile(t *testing.T) {
	_, lab := labConfig(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "sw1.secret"), []byte("from-file\n"), 0o600)
	doc := "cache: {path: c.db}\nclients:\n  - {name: a, address: 192.0.2.1, secret_file: sw1.secret}\nupstreams:\n  tls: {certificate: " + lab.ClientCert +
		", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers: [{name: u, address: 192.0.2.10}]\n"
	path := filepath.Join(dir, "m.yaml")
	os.WriteFile(path, []byte(doc), 0o600)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Built().Clients[0].Secret) != "from-file" {
		t.Fatal("secret_file not read relative to the config file")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(install.DefaultConfig))
	f.Add([]byte("clients:\n  - {name: a, address: 10.0.0.1/33}\n"))
	f.Add([]byte("request_timeout: 7d\nupstreams: {mode: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse("fuzz.yaml", data)
		if err == nil && c.Built() == nil {
			t.Fatal("valid config without built options")
		}
		if err != nil && !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
	})
}
