package packet

import (
	"strings"
	"testing"
)

// radclientAttrs are reply attributes of the kinds mxedge prints: the RFC 3580 VLAN triplet
// tagged and not, integers with and without a named value, addresses, a date, escapes in a
// string, a malformed value, unknown standard and vendor attributes, an extended attribute and
// the vendor attributes of the NAS vendors mxedge knows.
var radclientAttrs = []struct {
	vendor uint32
	code   uint8
	v      []byte
}{
	{0, AttrTunnelType, []byte{0, 0, 0, 13}},
	{0, AttrTunnelMediumType, []byte{1, 0, 0, 6}},
	{0, AttrTunnelPrivateGroupID, []byte("100")},
	{0, AttrTunnelPrivateGroupID, []byte("\x02guest")},
	{0, AttrTunnelPrivateGroupID, []byte{0, '7'}},
	{0, AttrTunnelPrivateGroupID, []byte{0x1f}},
	{0, AttrTunnelType, []byte{0, 0, 13}},
	{0, AttrSessionTimeout, []byte{0, 0, 14, 16}},
	{0, AttrServiceType, []byte{0, 0, 0, 10}},
	{0, AttrServiceType, []byte{0, 0, 0, 99}},
	{0, 8, []byte{10, 1, 2, 3}},
	{0, 8, []byte{10, 1, 2}},
	{0, AttrClass, []byte{1, 2, 0xff}},
	{0, AttrFilterID, []byte("a\"b\\c\n\r\t\x01é\xff\x7f")},
	{0, AttrReplyMessage, []byte("plain text")},
	{0, 55, []byte{0x69, 0, 0, 0}},
	{0, 96, []byte{0, 0, 0, 0, 0, 0xab, 0, 1}},
	{0, 97, []byte{0, 64, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0}},
	{0, 97, []byte{0, 60, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0}},
	{0, AttrNASIPv6Address, []byte{0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
	{0, AttrEgressVLANName, []byte("2vlan-a")},
	{0, 56, []byte{'1', 0, 0, 100}},
	{0, 200, []byte{1, 2}},
	{0, AttrTerminationAction, []byte{0, 0, 0, 1}},
	{0, AttrNASPortType, []byte{0, 0, 0, 15}},
	{0, 83, []byte{0, 0, 0, 5}},
	{0, 101, []byte{0, 0, 0, 201}},
	{0, AttrAcctStatusType, []byte{0, 0, 0, 3}},
	{0, 66, []byte("\x05host")},
	{0, AttrCallingStationID, []byte("02-00-00-00-00-99")},
	{0, 241, []byte{8, 'a', 'b'}},
	{0, 102, []byte{1, 2, 3}},
	{9, 1, []byte("shell:priv-lvl=15")},
	{311, 7, []byte{0, 0, 0, 2}},
	{311, 8, []byte{0, 0, 0, 6}},
	{14823, 1, []byte("employee")},
	{14823, 2, []byte{0, 0, 1, 44}},
	{14823, 9, []byte("vlan-x")},
	{14823, 250, []byte{0, 0, 1, 44}},
	{2636, 1, []byte("admin")},
	{25461, 1, []byte("superuser")},
	{11, 64, []byte{0x31, 0, 0, 10}},
	{25053, 10, []byte("wsg")},
	{29671, 1, []byte("ap-1")},
	{99999, 3, []byte{0, 0, 1, 44}},
}

// TestRenderingMatchesRadclient sends one reply carrying radclientAttrs to FreeRADIUS's radclient
// and compares every line it prints with AppendText. radclient (freeradius-utils) is a real peer
// nobody here wrote: the names and value syntax an operator compares against.
func TestRenderingMatchesRadclient(t *testing.T) {
	secret := []byte("testing123")
	received := radclientReply(t, secret, func(req Packet) ([]byte, error) {
		b := New(nil, CodeAccessAccept, req.ID(), nil)
		for _, a := range radclientAttrs {
			if a.vendor != 0 {
				b.AddVSA(a.vendor, a.code, a.v)
			} else {
				b.Add(a.code, a.v)
			}
		}
		return b.Finish(secret, req.Authenticator())
	})
	var got []string
	for _, l := range strings.Split(received, "\n")[1:] {
		if strings.HasPrefix(l, "\t") {
			got = append(got, strings.TrimPrefix(l, "\t"))
		}
	}
	if len(got) != len(radclientAttrs) {
		t.Fatalf("radclient printed %d attributes, sent %d:\n%s", len(got), len(radclientAttrs), received)
	}
	d := Builtin()
	for i, a := range radclientAttrs {
		if ours := string(d.AppendText(nil, a.vendor, a.code, a.v)); ours != got[i] {
			t.Errorf("%d/%d %x:\n  mxedge    %s\n  radclient %s", a.vendor, a.code, a.v, ours, got[i])
		}
	}
}
