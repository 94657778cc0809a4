package config_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"mxedge/edge/config"
)

// TestEduroamPreset: the preset adds the pool, a NAS client per national server and its routes
// after the operator's own.
func TestEduroamPreset(t *testing.T) {
	doc, _ := labConfig(t)
	doc += `
routes:
  - name: staff-eap
    realm_suffixes: [staff.example]
    methods: [eap]
    pool: default
eduroam:
  realms: [myuniversity.edu]
  operator_name: 1myuniversity.edu
  national_servers:
    - {name: nro1, address: 192.0.2.10, secret: nat, source: 192.0.2.1, source_ports: 8}
    - {name: nro2, address: "192.0.2.11:11812", accounting_port: -1, secret: nat, priority: 1}
`
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Built()
	var names []string
	for _, r := range b.Routes.Routes {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "staff-eap,eduroam-home-roaming,eduroam-unknown-realm,eduroam-home,eduroam-no-realm,eduroam-visitor" {
		t.Fatalf("routes %s", got)
	}
	if len(b.Routes.Pools) != 1 || b.Routes.Pools[0].Name != config.EduroamPool {
		t.Fatalf("pools %+v", b.Routes.Pools)
	}
	ups := b.Routes.Pools[0].Options.Upstreams
	if ups[0].Port != 1812 || ups[0].UDP.AcctPort != 1813 || ups[0].UDP.SourcePorts != 8 || ups[0].UDP.Source.String() != "192.0.2.1" {
		t.Errorf("nro1 %+v %+v", ups[0], ups[0].UDP)
	}
	if ups[1].Port != 11812 || ups[1].UDP.AcctPort != 0 {
		t.Errorf("nro2 %+v %+v", ups[1], ups[1].UDP)
	}
	var clients []string
	for _, cl := range b.Clients {
		clients = append(clients, cl.Name+"="+cl.Prefix.String())
	}
	if got := strings.Join(clients, ","); !strings.HasSuffix(got, "eduroam-nro1=192.0.2.10/32,eduroam-nro2=192.0.2.11/32") {
		t.Fatalf("clients %s", got)
	}
	v := b.Routes.Routes[5]
	if v.Pool != config.EduroamPool || v.OperatorName != "1myuniversity.edu" || !v.RequestCUI || !v.FTicks ||
		len(v.Match.SSIDs) != 1 || v.Match.SSIDs[0] != "eduroam" {
		t.Fatalf("visitor route %+v", v)
	}
	if err := b.Routes.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestRouteErrors: each mistake names the file, line and field.
func TestRouteErrors(t *testing.T) {
	doc, _ := labConfig(t)
	n := strings.Count(doc, "\n")
	line := func(k int) string { return "m.yaml:" + strconv.Itoa(n+k) + ": " }
	tests := []struct {
		name, extra string
		want        []string
	}{
		{"two targets", "routes:\n  - name: x\n    pool: default\n    reject: true\n", []string{line(2) + "routes[0]: set exactly one of pool, discover, reject"}},
		{"unknown pool", "routes:\n  - pool: nowhere\n", []string{line(2) + `routes[0].pool: no pool named "nowhere"`}},
		{"bad regexp", "routes:\n  - realm_regexps: ['(']\n    reject: true\n", []string{"routes[0]: proxy: route routes[0]: realm regexp"}},
		{"discover", "routes:\n  - discover: true\n", []string{line(2) + "routes[0].discover: needs RFC 7585 dynamic discovery: set discovery.enabled: true"}},
		{"udp server by name", "pools:\n  - name: p\n    servers:\n      - {name: a, address: nro.example, secret: s}\n", []string{line(4) + `pools[0].servers[0].address: "nro.example": a RADIUS/UDP server needs an IP address`}},
		{"udp without secret", "pools:\n  - name: p\n    servers:\n      - {name: a, address: 192.0.2.1}\n", []string{"pools[0].servers[0].secret: required (or secret_file)"}},
		{"eduroam without realms", "eduroam:\n  operator_name: 1x.edu\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n", []string{"eduroam.realms: list the institution's realms"}},
		{"eduroam operator name", "eduroam:\n  realms: [x.edu]\n  operator_name: x.edu\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n", []string{line(3) + "eduroam.operator_name: operator name \"x.edu\""}},
		{"two routes of one name", "routes:\n  - {name: r, reject: true}\n  - name: r\n    reject: true\n", []string{line(3) + `routes[1].name: "r" is the name of another route`}},
		{"a route named like the preset's", "routes:\n  - name: eduroam-home\n    reject: true\neduroam:\n  realms: [x.edu]\n  operator_name: 1x.edu\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n",
			[]string{line(2) + `routes[0].name: "eduroam-home" is the name of another route (the eduroam preset's are eduroam-home-roaming`}},
		{"f-ticks syslog not IP:port", "eduroam:\n  realms: [x.edu]\n  operator_name: 1x.edu\n  f_ticks_syslog: fticks.example.org\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n",
			[]string{line(4) + `eduroam.f_ticks_syslog: "fticks.example.org" is not IP:port`}},
		{"f-ticks facility", "eduroam:\n  realms: [x.edu]\n  operator_name: 1x.edu\n  f_ticks_syslog: 127.0.0.1:514\n  f_ticks_facility: local9\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n",
			[]string{line(5) + `eduroam.f_ticks_facility: "local9" is not one of user, daemon, auth, local0`}},
		{"f-ticks facility without a receiver", "eduroam:\n  realms: [x.edu]\n  operator_name: 1x.edu\n  f_ticks_facility: local2\n  national_servers:\n    - {name: a, address: 192.0.2.1, secret: s}\n",
			[]string{"eduroam.f_ticks_syslog: required with f_ticks_facility"}},
		{"eduroam server is a client", "eduroam:\n  realms: [x.edu]\n  operator_name: 1x.edu\n  national_servers:\n    - {name: a, address: 10.7.50.0, secret: s}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("m.yaml", []byte(doc+tt.extra))
			if tt.want == nil {
				// 10.7.50.0 is inside the shipped client's /24 but not the same prefix: allowed,
				// the /32 is more specific.
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
