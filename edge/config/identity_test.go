package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
)

func identityDoc(t *testing.T, identityYAML string) (string, string) {
	t.Helper()
	doc, dir := siteDoc(t, identityYAML)
	return doc, dir
}

func TestIdentity(t *testing.T) {
	lab := pkitest.Must(t)
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("tok\n"), 0o600)
	doc, dir := identityDoc(t, `identity:
  user: identity
  missing_domain: none
  session_timeout: 2h
  domains:
    sites: {hq: hq.example}
    ssids: {Corp: corp.example}
  sinks:
    - name: jims
      type: https
      url: https://jims.example/api/identity
      token_file: `+tok+`
      tls: {ca: `+lab.CAFile+`, certificate: `+lab.ClientCert+`, key: `+lab.ClientKey+`}
      sites: [hq]
      methods: [eap]
    - name: siem
      type: syslog
      address: 127.0.0.1:6514
      transport: tls
      facility: local0
      tls: {ca: `+lab.CAFile+`}
    - name: rsso
      type: radius-accounting
      address: 192.0.2.50:1813
      secret: copy
`)
	path := filepath.Join(dir, "m.yaml")
	os.WriteFile(path, []byte(doc), 0o600)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	id := c.Built().Identity
	if id == nil || len(id.Options.Sinks) != 3 || id.SessionTimeout != 2*time.Hour || id.Options.UserSource != "identity" {
		t.Fatalf("identity %+v", id)
	}
	if err := id.Options.Validate(); err != nil {
		t.Fatal(err)
	}
	j, s, r := id.Options.Sinks[0], id.Options.Sinks[1], id.Options.Sinks[2]
	if j.HTTPS == nil || len(j.HTTPS.TLS.Certificates) != 1 || j.HTTPS.TLS.RootCAs == nil || j.Filter.Sites[0] != "hq" {
		t.Fatalf("https sink %+v", j)
	}
	if s.Syslog == nil || s.Syslog.Facility != 16 || s.Syslog.Transport != "tls" || s.Syslog.TLS.RootCAs == nil {
		t.Fatalf("syslog sink %+v", s.Syslog)
	}
	if r.Accounting == nil || string(r.Accounting.Secret) != "copy" {
		t.Fatalf("accounting sink %+v", r.Accounting)
	}
	if id.Options.Dir != filepath.Join(dir, "identity") || id.Options.Domains.Missing != "none" {
		t.Fatalf("dir %q domains %+v", id.Options.Dir, id.Options.Domains)
	}
}

func TestIdentityErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"identity: {sinks: [{name: a, type: https, url: 'http://x/'}]}", "identity.sinks[0].url: \"http://x/\": must be https"},
		{"identity: {sinks: [{name: a, type: https, url: 'https://x/', token_file: /nonexistent}]}", "identity.sinks[0].token_file"},
		{"identity: {sinks: [{name: a, type: https, url: 'https://x/', tls: {key: /k}}]}", "identity.sinks[0].tls.certificate: required with key"},
		{"identity: {sinks: [{name: a, type: https, url: 'https://x/', tls: {ca: /nonexistent.pem}}]}", "identity.sinks[0].tls.ca"},
		{"identity: {sinks: [{name: a, type: syslog, address: x}]}", "identity.sinks[0].address: \"x\" is not host:port"},
		{"identity: {sinks: [{name: a, type: syslog, address: 'h:514', transport: sctp}]}", "identity.sinks[0].transport"},
		{"identity: {sinks: [{name: a, type: syslog, address: 'h:514', facility: mars}]}", "identity.sinks[0].facility"},
		{"identity: {sinks: [{name: a, type: radius-accounting, address: 'h:1813'}]}", "identity.sinks[0].secret: required"},
		{"identity: {sinks: [{name: a, type: kafka}]}", "identity.sinks[0].type: \"kafka\" is not one of"},
		{"identity: {sinks: [{name: a, type: syslog, address: 'h:514', sites: [nowhere]}]}", "identity.sinks[0].sites[0]: \"nowhere\" is no client's site"},
		{"identity: {sinks: [{name: a, type: syslog, address: 'h:514', methods: [kerberos]}]}", "identity.sinks[0].methods[0]"},
		{"identity: {sinks: [{name: a, type: syslog, address: 'h:514'}, {name: a, type: syslog, address: 'h:514'}]}", "identity.sinks[1].name: \"a\" is used"},
		{"identity: {user: email, sinks: [{name: a, type: syslog, address: 'h:514'}]}", "identity.user"},
		{"identity: {session_timeout: 5s, sinks: [{name: a, type: syslog, address: 'h:514'}]}", "identity.session_timeout"},
	} {
		doc, dir := identityDoc(t, tc.yaml+"\n")
		path := filepath.Join(dir, "m.yaml")
		os.WriteFile(path, []byte(doc), 0o600)
		_, err := config.Load(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%s:\n got %v\nwant %q", tc.yaml, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "m.yaml:") {
			t.Errorf("%s: no file:line in %v", tc.yaml, err)
		}
	}
}
