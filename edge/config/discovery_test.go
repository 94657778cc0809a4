package config_test

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/proxy"
)

func TestDiscoveryConfig(t *testing.T) {
	_, lab := labConfig(t)
	tests := []struct {
		name  string
		block string
		want  []string // error parts; none: valid
		check func(t *testing.T, o *proxy.DiscoveryOptions)
	}{
		{"off", "", nil, func(t *testing.T, o *proxy.DiscoveryOptions) {
			if o != nil {
				t.Fatalf("built %+v without discovery.enabled", o)
			}
		}},
		{"defaults", "discovery: {enabled: true}\n", nil, func(t *testing.T, o *proxy.DiscoveryOptions) {
			if o.NegativeTTL != time.Minute || o.IdleTimeout != 5*time.Minute || o.Upstream.TLS == nil || len(o.Services) != 0 {
				t.Fatalf("defaults %+v", o)
			}
			if err := (&proxy.DiscoveryOptions{Resolver: nopRealms{}, Upstream: o.Upstream}).Validate(); err != nil {
				t.Fatal(err)
			}
		}},
		{"eduroam", "discovery:\n  enabled: true\n  services: [x-eduroam:radius.tls, aaa+auth:radius.tls.tcp]\n  server_name: radsec.{realm}\n  idle_timeout: 10m\n  negative_ttl: 30s\n",
			nil, func(t *testing.T, o *proxy.DiscoveryOptions) {
				if !slices.Equal(o.Services, []string{"x-eduroam:radius.tls", "aaa+auth:radius.tls.tcp"}) || o.ServerName != "radsec.{realm}" ||
					o.IdleTimeout != 10*time.Minute || o.NegativeTTL != 30*time.Second {
					t.Fatalf("built %+v", o)
				}
			}},
		{"bad", "discovery:\n  enabled: true\n  services: [\"aaa+auth: x\"]\n  server_name: radsec.example\n  idle_timeout: 1s\n",
			[]string{"m.yaml:16: discovery.services[0]: \"aaa+auth: x\" is not a NAPTR service tag", "m.yaml:17: discovery.server_name: \"radsec.example\" must contain {realm}", "m.yaml:18: discovery.idle_timeout: 1s is outside"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("m.yaml", []byte(radsecDoc(lab, "", "      cert_names: [\"*\"]\n")+tt.block))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c.Built().Discovery)
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

type nopRealms struct{}

func (nopRealms) Discover(context.Context, string, []string) ([]proxy.Target, error) { return nil, nil }
func (nopRealms) InvalidateRealm(string)                                             {}

// TestRequireHybridKEX: tls.require_hybrid_kex restricts a RadSec TLS block (upstream, listener)
// to the hybrid groups and TLS 1.3, and contradicts min_version 1.2.
func TestRequireHybridKEX(t *testing.T) {
	_, lab := labConfig(t)
	doc := strings.Replace(radsecDoc(lab, "", "      cert_names: [\"*\"]\n"), "ca: "+lab.CAFile+"}", "ca: "+lab.CAFile+", require_hybrid_kex: true}", 2)
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"upstream": c.Built().Pool.Upstreams[0].TLS, "listener": c.Built().Listener.TLS} {
		if !slices.Equal(cfg.CurvePreferences, proxy.HybridGroups()) || cfg.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s: curves %v, min version %x", name, cfg.CurvePreferences, cfg.MinVersion)
		}
	}
	bad := strings.Replace(doc, "require_hybrid_kex: true}", "require_hybrid_kex: true, min_version: \"1.2\"}", 1)
	if _, err := config.Parse("m.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "upstreams.tls.min_version: 1.2 contradicts require_hybrid_kex") {
		t.Fatalf("min_version 1.2 with require_hybrid_kex: %v", err)
	}
	plain, err := config.Parse("m.yaml", []byte(radsecDoc(lab, "", "      cert_names: [\"*\"]\n")))
	if err != nil {
		t.Fatal(err)
	}
	if cp := plain.Built().Pool.Upstreams[0].TLS.CurvePreferences; cp != nil {
		t.Errorf("default curves %v, want Go's default (nil)", cp)
	}
}

// TestUpstreamSource: source and bind_device per upstreams block and per server, the server's
// winning; bad values name their line and field.
func TestUpstreamSource(t *testing.T) {
	_, lab := labConfig(t)
	base := radsecDoc(lab, "", "      cert_names: [\"*\"]\n")
	doc := strings.Replace(base, "  servers: [{name: u, address: 192.0.2.10}]",
		"  source: 192.0.2.77\n  bind_device: vrf-wan\n  servers: [{name: u, address: 192.0.2.10}, {name: v, address: 192.0.2.11, source: \"2001:db8::7\", bind_device: eth1}]", 1)
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ups := c.Built().Pool.Upstreams
	if ups[0].Source.String() != "192.0.2.77" || ups[0].BindDevice != "vrf-wan" || ups[1].Source.String() != "2001:db8::7" || ups[1].BindDevice != "eth1" {
		t.Fatalf("upstreams %+v / %+v", ups[0], ups[1])
	}
	bad := strings.Replace(base, "  servers: [{name: u, address: 192.0.2.10}]",
		"  source: 0.0.0.0\n  servers: [{name: u, address: 192.0.2.10, bind_device: \"a/b\"}]", 1)
	_, err = config.Parse("m.yaml", []byte(bad))
	for _, w := range []string{`m.yaml:6: upstreams.source: "0.0.0.0" is not a unicast IP address`, `upstreams.servers[0].bind_device: "a/b" is not an interface name`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}
