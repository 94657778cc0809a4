package config_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
)

// TestDynAuthBuild: the dynamic_authorization block and coa_port become the relay's options; the
// listener binds 3799 by default only when someone may send CoA.
func TestDynAuthBuild(t *testing.T) {
	lab := pkitest.Must(t)
	rest := "cache: {path: " + filepath.Join(t.TempDir(), "cache.db") + "}\nupstreams:\n  tls: {certificate: " + lab.ClientCert +
		", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers: [{name: u, address: 192.0.2.1}]\n"
	doc := rest + `clients:
  - {name: sw1, address: 10.0.0.1, secret: s1, vendor: cisco, coa_port: 1700}
  - {name: floor, address: 10.1.0.0/16, secret: s2}
dynamic_authorization:
  timeout: 500ms
  retries: 0
  clients:
    - {name: ise, address: 192.0.2.10, secret: da, require_message_authenticator: false}
`
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Built().DynAuth
	if strings.Join(o.Listen, ",") != "0.0.0.0:3799,[::]:3799" {
		t.Errorf("listen %v", o.Listen)
	}
	if o.Timeout.String() != "500ms" || o.Retries != -1 {
		t.Errorf("timeout %v retries %d (0 in the file means none: -1)", o.Timeout, o.Retries)
	}
	if len(o.NASes) != 2 || o.NASes[0].CoAPort != 1700 || o.NASes[0].Vendor != "cisco" || o.NASes[1].CoAPort != 0 ||
		o.NASes[1].Prefix != netip.MustParsePrefix("10.1.0.0/16") || string(o.NASes[1].Secret) != "s2" {
		t.Errorf("NASes %+v", o.NASes)
	}
	if len(o.Clients) != 1 || o.Clients[0].RequireMessageAuthenticator || !o.Clients[0].LimitProxyState {
		t.Errorf("clients %+v", o.Clients)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	c, err = config.Parse("m.yaml", []byte(rest+"clients:\n  - {name: sw1, address: 10.0.0.1, secret: s1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Built().DynAuth.Listen; len(l) != 0 {
		t.Errorf("no dynamic authorization clients, yet listening on %v", l)
	}
}

func TestDynAuthErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"coa port", "clients:\n  - {name: a, address: 10.0.0.1, secret: s, coa_port: 70000}\n", "m.yaml:2: clients[0].coa_port:"},
		{"listen", "dynamic_authorization:\n  listen: [\"3799\"]\n", "m.yaml:2: dynamic_authorization.listen[0]:"},
		{"timeout", "dynamic_authorization:\n  timeout: 1m\n", "m.yaml:2: dynamic_authorization.timeout:"},
		{"retries", "dynamic_authorization:\n  retries: 11\n", "m.yaml:2: dynamic_authorization.retries:"},
		{"client secret", "dynamic_authorization:\n  clients:\n    - {name: ise, address: 192.0.2.1}\n", "m.yaml:3: dynamic_authorization.clients[0].secret: required"},
		{"client address", "dynamic_authorization:\n  clients:\n    - {name: ise, address: nowhere, secret: s}\n", "m.yaml:3: dynamic_authorization.clients[0].address:"},
		{"unknown key", "dynamic_authorization:\n  port: 3799\n", `unknown key "port"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("m.yaml", []byte(tt.doc))
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReconcileConfig(t *testing.T) {
	lab := pkitest.Must(t)
	rest := "cache: {path: " + filepath.Join(t.TempDir(), "cache.db") + "}\nupstreams:\n  tls: {certificate: " + lab.ClientCert +
		", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers: [{name: u, address: 192.0.2.1}]\n" +
		"clients:\n  - {name: sw1, address: 10.0.0.1, secret: s1, site: hq}\n  - {name: sw2, address: 10.0.0.2, secret: s1, site: lab}\n"
	c, err := config.Parse("m.yaml", []byte(rest+`dynamic_authorization:
  reconcile:
    rate: 2.5
    fallback: none
    sites:
      - {name: lab, enabled: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Built().Reconcile
	if r.Rate != 2.5 || !r.Policy("hq").Enabled || r.Policy("hq").Disconnect || r.Policy("lab").Enabled {
		t.Errorf("reconcile %+v: hq %+v lab %+v", r, r.Policy("hq"), r.Policy("lab"))
	}
	c, err = config.Parse("m.yaml", []byte(rest))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Built().Reconcile; r.Rate != 10 || !r.Policy("hq").Enabled || !r.Policy("hq").Disconnect {
		t.Errorf("defaults %+v", r.Policy("hq"))
	}
	for _, tt := range []struct{ doc, want string }{
		{"dynamic_authorization:\n  reconcile: {rate: 5000}\n", "m.yaml:9: dynamic_authorization.reconcile.rate:"},
		{"dynamic_authorization:\n  reconcile: {fallback: bounce}\n", "dynamic_authorization.reconcile.fallback:"},
		{"dynamic_authorization:\n  reconcile:\n    sites: [{name: nowhere}]\n", `no NAS client is at site "nowhere"`},
	} {
		_, err := config.Parse("m.yaml", []byte(rest+tt.doc))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.doc, err, tt.want)
		}
	}
}
