package localeap

import (
	"testing"
	"time"

	"mxedge/proxy/packet"
	"mxedge/survivability"
)

// siteAuthorizer records the site it is asked about and gives a VLAN named after it.
type siteAuthorizer struct{ sites []string }

func (a *siteAuthorizer) Authorize(p survivability.Proof, vendor, site string) survivability.Verdict {
	a.sites = append(a.sites, site)
	attrs := survivability.DefaultVLANAttrs(vendor, "corp-"+site)
	return survivability.Verdict{Allowed: true, Attrs: attrs, VLAN: survivability.VLAN(attrs), Reason: ReasonDefaultVLAN}
}

// TestAuthorizerGetsTheSite: a verified certificate is decided under the NAS's site
// (proxy.Client.Site), whose policy gives the default 802.1X VLAN and failmode
// (survivability.Sites).
func TestAuthorizerGetsTheSite(t *testing.T) {
	l := testLab(t)
	o := l.options(t)
	a := &siteAuthorizer{}
	o.Authorizer = a
	h, evs := newHandler(t, o)
	req, resp, _ := authenticate(t, h, l.clientConfig(cliECDSA), testMAC)
	if resp.Code() != packet.CodeAccessAccept {
		t.Fatalf("got %v", resp.Code())
	}
	if len(a.sites) != 1 || a.sites[0] != req.Client.Site {
		t.Fatalf("Authorize asked for sites %q, want once for the NAS's %q", a.sites, req.Client.Site)
	}
	want := "corp-" + req.Client.Site
	if v, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); string(v) != want {
		t.Fatalf("VLAN %q, want %q", v, want)
	}
	if ev := evs.wait(t, time.Second); ev.VLAN != want {
		t.Fatalf("event %+v", ev)
	}
}
