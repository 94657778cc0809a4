package config_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
	"mxedge/proxy"
)

// radsecDoc is a valid configuration with a RadSec listener whose radsec block ends with extra
// (indented under radsec:) and whose one peer has the peer lines given.
func radsecDoc(lab *pkitest.Lab, extra, peer string) string {
	return fmt.Sprintf(`cache: {path: %s/c.db}
clients:
  - {name: a, address: 192.0.2.1, secret: s}
upstreams:
  tls: {certificate: %s, key: %s, ca: %s}
  servers: [{name: u, address: 192.0.2.10}]
radsec:
  listen: ["127.0.0.1:2083"]
  tls: {certificate: %s, key: %s, ca: %s}
%s  peers:
    - name: ap
      address: 10.0.0.0/8
%s`, lab.Dir, lab.ClientCert, lab.ClientKey, lab.CAFile, lab.ServerCert, lab.ServerKey, lab.CAFile, extra, peer)
}

func TestRadSecCertNames(t *testing.T) {
	_, lab := labConfig(t)
	tests := []struct {
		name  string
		peer  string
		want  []string // error parts; none: valid
		names []string
	}{
		// The peer's entry starts on line 11 (- name: ap); a key that is absent is reported there.
		{"missing", "", []string{"m.yaml:11: radsec.peers[0].cert_names: required", `["*"]`}, nil},
		{"empty list", "      cert_names: []\n", []string{"m.yaml:13: radsec.peers[0].cert_names: required"}, nil},
		{"empty name", "      cert_names: [\"ap.example.com\", \" \"]\n", []string{"m.yaml:13: radsec.peers[0].cert_names[1]: empty name"}, nil},
		{"star with others", "      cert_names: [\"ap.example.com\", \"*\"]\n", []string{"radsec.peers[0].cert_names[1]:", "alone"}, nil},
		{"names", "      cert_names: [\"ap.example.com\"]\n", nil, []string{"ap.example.com"}},
		{"explicit any", "      cert_names: [\"*\"]\n", nil, []string{proxy.AnyCertName}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("m.yaml", []byte(radsecDoc(lab, "", tt.peer)))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Built().Listener.Peers[0].CertNames; !slices.Equal(got, tt.names) {
					t.Fatalf("cert names %q, want %q", got, tt.names)
				}
				return
			}
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

func TestRadSecListenerLimits(t *testing.T) {
	_, lab := labConfig(t)
	peer := "      cert_names: [\"ap.example.com\"]\n"
	c, err := config.Parse("m.yaml", []byte(radsecDoc(lab, "", peer)))
	if err != nil {
		t.Fatal(err)
	}
	lo := c.Built().Listener
	if lo.IdleTimeout != 15*time.Minute || lo.MaxConnsPerPeer != 0 || lo.MaxInFlightPerPeer != 0 {
		t.Fatalf("defaults: idle %v conns %d in flight %d (0: the listener's default)", lo.IdleTimeout, lo.MaxConnsPerPeer, lo.MaxInFlightPerPeer)
	}
	c, err = config.Parse("m.yaml", []byte(radsecDoc(lab, "  idle_timeout: 2m\n  max_connections_per_peer: 2\n  max_in_flight_per_peer: 64\n", peer)))
	if err != nil {
		t.Fatal(err)
	}
	if lo := c.Built().Listener; lo.IdleTimeout != 2*time.Minute || lo.MaxConnsPerPeer != 2 || lo.MaxInFlightPerPeer != 64 {
		t.Fatalf("set: %+v", lo)
	}
	for _, tt := range []struct{ extra, want string }{
		{"  idle_timeout: 1s\n", "m.yaml:10: radsec.idle_timeout: 1s is outside 10s..24h"},
		{"  max_connections_per_peer: -1\n", "m.yaml:10: radsec.max_connections_per_peer:"},
		{"  max_in_flight_per_peer: 100000\n", "m.yaml:10: radsec.max_in_flight_per_peer:"},
	} {
		_, err := config.Parse("m.yaml", []byte(radsecDoc(lab, tt.extra, peer)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.extra, err, tt.want)
		}
	}
}

// TestRadSecCipherSuites: every RadSec tls.Config the loader builds, listener and upstream client,
// offers TLS 1.2 with ECDHE and AEAD only.
func TestRadSecCipherSuites(t *testing.T) {
	_, lab := labConfig(t)
	c, err := config.Parse("m.yaml", []byte(radsecDoc(lab, "", "      cert_names: [\"*\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Built()
	cfgs := map[string]*tls.Config{"listener": b.Listener.TLS, "upstream": b.Pool.Upstreams[0].TLS}
	for name, cfg := range cfgs {
		if len(cfg.CipherSuites) == 0 {
			t.Fatalf("%s: no cipher suite list: Go's defaults include CBC-SHA suites", name)
		}
		for _, id := range cfg.CipherSuites {
			s := tls.CipherSuiteName(id)
			if !strings.HasPrefix(s, "TLS_ECDHE_") || !(strings.Contains(s, "_GCM_") || strings.Contains(s, "CHACHA20_POLY1305")) {
				t.Errorf("%s offers %s", name, s)
			}
		}
	}
}

// TestUpstreamRefusesCBC: the upstream client configuration the loader builds cannot complete a
// TLS 1.2 handshake with a server that offers only CBC suites, and completes one offering GCM.
func TestUpstreamRefusesCBC(t *testing.T) {
	doc, lab := labConfig(t)
	c, err := config.Parse("mxedge.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	client := c.Built().Pool.Upstreams[0].TLS.Clone()
	client.ServerName = "localhost"
	for _, tt := range []struct {
		name   string
		suites []uint16
		ok     bool
	}{
		{"cbc", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}, false},
		{"gcm", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			server := lab.ServerTLS()
			server.MaxVersion = tls.VersionTLS12
			server.CipherSuites = tt.suites
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			done := make(chan error, 1)
			go func() {
				s := tls.Server(b, server)
				err := s.Handshake()
				b.Close()
				done <- err
			}()
			cerr := tls.Client(a, client).Handshake()
			a.Close()
			serr := <-done
			if ok := cerr == nil && serr == nil; ok != tt.ok {
				t.Fatalf("handshake client err %v, server err %v; want success %v", cerr, serr, tt.ok)
			}
		})
	}
}
