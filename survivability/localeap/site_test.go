package localeap

import (
	"testing"
	"time"

	"mxedge/proxy/packet"
)

// TestSitePolicy: with Options.Site, the default 802.1X VLAN and failmode are those of the NAS's
// site (survivability.Sites), not DefaultVLAN and FailClosed.
func TestSitePolicy(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		name       string
		vlan       string
		failClosed bool
		code       packet.Code
		reason     string
	}{
		{"site vlan", "corp-branch", false, packet.CodeAccessAccept, ReasonDefaultVLAN},
		{"site fail closed", "corp-branch", true, packet.CodeAccessReject, ReasonFailClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t) // DefaultVLAN 100, FailClosed false: overridden by Site
			var asked []string
			o.Site = func(site string) (string, bool) {
				asked = append(asked, site)
				return tt.vlan, tt.failClosed
			}
			h, evs := newHandler(t, o)
			req, resp, _ := authenticate(t, h, l.clientConfig(cliECDSA), testMAC)
			if resp.Code() != tt.code {
				t.Fatalf("got %v, want %v", resp.Code(), tt.code)
			}
			if len(asked) != 1 || asked[0] != req.Client.Site {
				t.Fatalf("Site asked for %q, want once for the NAS's site %q", asked, req.Client.Site)
			}
			ev := evs.wait(t, time.Second)
			if ev.Reason != tt.reason {
				t.Fatalf("event %+v, want %s", ev, tt.reason)
			}
			if v, _ := resp.Attr(packet.AttrTunnelPrivateGroupID); tt.code == packet.CodeAccessAccept && (string(v) != tt.vlan || ev.VLAN != tt.vlan) {
				t.Fatalf("VLAN %q (event %q), want the site's %q", v, ev.VLAN, tt.vlan)
			}
		})
	}
}
