package survivability

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// siteEngine is an engine over sites, with a cache knowing one MAB client learned at t0 at "hq".
func siteEngine(t *testing.T, table SiteTable, now *time.Time) (*Engine, *[]Event) {
	t.Helper()
	sites, err := NewSites(table)
	if err != nil {
		t.Fatal(err)
	}
	known := cache.Record{MAC: "aa:bb:cc:dd:ee:ff", Method: cache.MethodMAB, Site: "hq", LastAuthorized: t0,
		Attrs: DefaultVLANAttrs("generic", "300")}
	var events []Event
	clock := func() time.Time { return *now }
	a, err := NewAuthorizer(AuthorizerOptions{Cache: memCache{known}, Sites: sites, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineOptions{Health: NewHealth(HealthOptions{}), Authorizer: a, Sites: sites, Now: clock,
		Events: func(ev Event) { events = append(events, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	return e, &events
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// serveFrom answers p from a NAS of site and vendor.
func serveFrom(t *testing.T, e *Engine, site, vendor string, p packet.Packet) packet.Packet {
	t.Helper()
	client := &proxy.Client{Name: "sw-" + site, Vendor: vendor, Site: site, Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	resp, err := e.Serve(context.Background(), &proxy.Request{Client: client, Packet: p}, proxy.ErrNoUpstream)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func mabRequest(t *testing.T, mac string) packet.Packet {
	return request(t, s(1, mac), s(2, mac), s(31, mac))
}

func TestSitePolicies(t *testing.T) {
	now := t0.Add(time.Hour)
	table := SiteTable{
		Default: Site{Enabled: true, DefaultMABVLAN: "41", CachingPeriod: 7 * 24 * time.Hour},
		Sites: map[string]Site{
			"hq":     {Name: "hq", Enabled: true, DefaultMABVLAN: "100", CachingPeriod: 2 * 24 * time.Hour},
			"branch": {Name: "branch", Enabled: true, DefaultMABVLAN: "guest-iot"},
			"lab":    {Name: "lab", Enabled: false, DefaultMABVLAN: "999"},
			"vault":  {Name: "vault", Enabled: true, DefaultMABVLAN: "5", FailClosed: true},
		},
	}
	e, events := siteEngine(t, table, &now)
	tests := []struct {
		site, vendor, mac string
		code              packet.Code
		vlan              string
		reason            string
	}{
		{"hq", "cisco", "02:00:00:00:00:01", packet.CodeAccessAccept, "100", "default-vlan"},
		{"branch", "juniper", "02:00:00:00:00:01", packet.CodeAccessAccept, "guest-iot", "default-vlan"},
		{"elsewhere", "cisco", "02:00:00:00:00:01", packet.CodeAccessAccept, "41", "default-vlan"}, // not listed: the default
		{"lab", "cisco", "02:00:00:00:00:01", packet.CodeAccessReject, "", ReasonSiteDisabled},
		{"lab", "cisco", "aa:bb:cc:dd:ee:ff", packet.CodeAccessReject, "", ReasonSiteDisabled}, // even a known client
		{"vault", "cisco", "02:00:00:00:00:01", packet.CodeAccessReject, "", "failmode-closed"},
		{"branch", "cisco", "aa:bb:cc:dd:ee:ff", packet.CodeAccessAccept, "300", "cache-hit"},
	}
	for _, tt := range tests {
		t.Run(tt.site+"/"+tt.mac, func(t *testing.T) {
			*events = nil
			resp := serveFrom(t, e, tt.site, tt.vendor, mabRequest(t, tt.mac))
			if resp == nil || resp.Code() != tt.code {
				t.Fatalf("answer %v, want %v", resp, tt.code)
			}
			if v, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(v) != tt.vlan {
				t.Fatalf("VLAN %q, want %q", v, tt.vlan)
			}
			if len(*events) != 1 || (*events)[0].Reason != tt.reason || (*events)[0].Site != tt.site {
				t.Fatalf("events %+v, want one %s", *events, tt.reason)
			}
		})
	}
	// The juniper NAS got the named VLAN as Egress-VLAN-Name too, as for the global default.
	if resp := serveFrom(t, e, "branch", "juniper", mabRequest(t, "02:00:00:00:00:02")); !resp.Has(packet.AttrEgressVLANName) {
		t.Fatal("juniper: named default VLAN without Egress-VLAN-Name")
	}

	// No answer for a disabled site under no_upstream: drop; accounting still goes to the spool.
	table.NoUpstreamDrop = true
	if err := e.opts.Sites.Set(table); err != nil {
		t.Fatal(err)
	}
	*events = nil
	if resp := serveFrom(t, e, "lab", "cisco", mabRequest(t, "02:00:00:00:00:01")); resp != nil {
		t.Fatalf("disabled site under drop: answered %v", resp.Code())
	}
	if len(*events) != 1 || (*events)[0].Reason != ReasonSiteDisabledNoAnswer || !Unanswered((*events)[0].Reason) {
		t.Fatalf("disabled site under drop: events %+v", *events)
	}
	sp := &memSpool{}
	e.opts.Accounting = sp
	ab := packet.New(nil, packet.CodeAccountingRequest, 5, nil)
	ab.AddUint32(packet.AttrAcctStatusType, 1)
	acct, _ := ab.Finish(secret, nil)
	if r := serveFrom(t, e, "lab", "cisco", acct); r == nil || r.Code() != packet.CodeAccountingResponse || sp.n != 1 {
		t.Fatal("accounting of a disabled site not spooled")
	}

	// The caching period is that of the site the entry was learned at (hq: 2 days).
	now = t0.Add(47 * time.Hour)
	if v, _ := serveFrom(t, e, "branch", "cisco", mabRequest(t, "aa:bb:cc:dd:ee:ff")).Attr(packet.AttrTunnelPrivateGroupID); string(v) != "300" {
		t.Fatalf("within hq's caching period: VLAN %q", v)
	}
	now = t0.Add(49 * time.Hour)
	if v, _ := serveFrom(t, e, "branch", "cisco", mabRequest(t, "aa:bb:cc:dd:ee:ff")).Attr(packet.AttrTunnelPrivateGroupID); string(v) != "guest-iot" {
		t.Fatalf("past hq's caching period: VLAN %q, want branch's default", v)
	}
}

func TestSiteTableValidate(t *testing.T) {
	tests := []struct {
		name string
		site Site
		ok   bool
	}{
		{"zero", Site{}, true},
		{"period", Site{CachingPeriod: 30 * 24 * time.Hour}, true},
		{"period too short", Site{CachingPeriod: time.Hour}, false},
		{"period too long", Site{CachingPeriod: 31 * 24 * time.Hour}, false},
		{"long vlan", Site{DefaultDot1XVLAN: string(make([]byte, 254))}, false},
		{"local without accounts", Site{Password: PasswordLocal}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := NewSites(SiteTable{})
			err := s.Set(SiteTable{Sites: map[string]Site{"x": tt.site}})
			if (err == nil) != tt.ok {
				t.Fatalf("Set: %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && s.For("x").Name != "" {
				t.Fatal("an invalid table replaced the current one")
			}
		})
	}
}
