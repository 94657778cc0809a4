package survivability

import (
	"bytes"
	"testing"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

func TestReplayable(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    cache.Attr
		want bool
	}{
		{"Tunnel-Type", cache.Attr{Type: 64, Tag: 1}, true},
		{"Tunnel-Private-Group-Id", cache.Attr{Type: 81}, true},
		{"Filter-Id", cache.Attr{Type: 11}, true},
		{"Session-Timeout", cache.Attr{Type: 27}, true},
		{"Idle-Timeout", cache.Attr{Type: 28}, true},
		{"Termination-Action", cache.Attr{Type: 29}, true},
		{"Egress-VLAN-Name", cache.Attr{Type: 58}, true},
		{"Cisco-AVPair", cache.Attr{Type: 26, Vendor: 9, VendorType: 1}, true},
		{"MS-MPPE-Encryption-Policy", cache.Attr{Type: 26, Vendor: 311, VendorType: 7}, true},
		{"Aruba-User-Role", cache.Attr{Type: 26, Vendor: 14823, VendorType: 1}, true},
		{"EAP-Message", cache.Attr{Type: 79}, false},
		{"State", cache.Attr{Type: 24}, false},
		{"Class", cache.Attr{Type: 25}, false},
		{"Message-Authenticator", cache.Attr{Type: 80}, false},
		{"Proxy-State", cache.Attr{Type: 33}, false},
		{"User-Password", cache.Attr{Type: 2}, false},
		{"CHAP-Password", cache.Attr{Type: 3}, false},
		{"Tunnel-Password", cache.Attr{Type: 69}, false},
		{"EAP-Key-Name", cache.Attr{Type: 102}, false},
		{"MS-CHAP-MPPE-Keys", cache.Attr{Type: 26, Vendor: 311, VendorType: 12}, false},
		{"MS-MPPE-Send-Key", cache.Attr{Type: 26, Vendor: 311, VendorType: 16}, false},
		{"MS-MPPE-Recv-Key", cache.Attr{Type: 26, Vendor: 311, VendorType: 17}, false},
		{"MS-CHAP2-Success", cache.Attr{Type: 26, Vendor: 311, VendorType: 26}, false},
		// Salt-encrypted like the MPPE keys (encrypt=2 in dictionary.aruba): garbage if replayed.
		{"Aruba-MPSK-Passphrase", cache.Attr{Type: 26, Vendor: 14823, VendorType: 44}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Replayable(tt.a); got != tt.want {
				t.Fatalf("Replayable(%+v) = %v, want %v", tt.a, got, tt.want)
			}
		})
	}
	// Every attribute the dictionary marks encrypt= is excluded, whatever its vendor.
	for _, def := range packet.Builtin().Encrypted() {
		a := cache.Attr{Type: def.Code}
		if def.Vendor != 0 {
			a = cache.Attr{Type: packet.AttrVendorSpecific, Vendor: def.Vendor, VendorType: def.Code}
		}
		if Replayable(a) {
			t.Errorf("%s (encrypt=%d) is replayable", def.Name, def.Encrypt)
		}
	}
}

// TestConstantsMatchDictionary: the numbers named in this package are the dictionary's.
func TestConstantsMatchDictionary(t *testing.T) {
	d := packet.Builtin()
	for _, tt := range []struct {
		name   string
		vendor uint32
		code   uint8
	}{
		{"Aruba-User-Vlan", vendorAruba, arubaUserVlan},
		{"Aruba-Named-User-Vlan", vendorAruba, arubaNamedUserVlan},
		{"EAP-Key-Name", 0, attrEAPKeyName},
		{"MS-CHAP-MPPE-Keys", packet.VendorMicrosoft, msCHAPMPPEKeys},
		{"MS-MPPE-Send-Key", packet.VendorMicrosoft, msMPPESendKey},
		{"MS-MPPE-Recv-Key", packet.VendorMicrosoft, msMPPERecvKey},
		{"MS-CHAP2-Success", packet.VendorMicrosoft, msCHAP2Success},
		{"Tunnel-Type", 0, packet.AttrTunnelType},
		{"Tunnel-Medium-Type", 0, packet.AttrTunnelMediumType},
		{"Tunnel-Private-Group-Id", 0, packet.AttrTunnelPrivateGroupID},
		{"Egress-VLAN-Name", 0, packet.AttrEgressVLANName},
	} {
		if got := d.Name(tt.vendor, tt.code); got != tt.name {
			t.Errorf("%d/%d is %s in the dictionary, want %s", tt.vendor, tt.code, got, tt.name)
		}
	}
	if v, ok := d.VendorByName("Aruba"); !ok || v.ID != vendorAruba {
		t.Errorf("vendor Aruba = %+v", v)
	}
	for _, tt := range []struct {
		attr, value string
		want        uint32
	}{{"Tunnel-Type", "VLAN", tunnelTypeVLAN}, {"Tunnel-Medium-Type", "IEEE-802", tunnelMediumTypeIEEE802}} {
		def, _ := d.ByName(tt.attr)
		if n, ok := def.ValueNumber(tt.value); !ok || n != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.attr, tt.value, n, tt.want)
		}
	}
}

// TestReplayByteForByte: a reply's replayable attributes come back exactly as the cloud sent
// them, tags included (Tunnel-Preference is a tagged integer in the dictionary).
func TestReplayByteForByte(t *testing.T) {
	in := packet.New(nil, packet.CodeAccessAccept, 1, nil)
	in.Add(packet.AttrTunnelType, []byte{1, 0, 0, 13})
	in.Add(packet.AttrTunnelMediumType, []byte{0, 0, 0, 6})
	in.Add(packet.AttrTunnelPrivateGroupID, []byte("\x01100"))
	in.Add(83, []byte{2, 0, 0, 5})                          // Tunnel-Preference:2
	in.Add(packet.AttrState, []byte("session"))             // dropped
	in.AddVSA(14823, 44, []byte{0x80, 1, 2, 3})             // Aruba-MPSK-Passphrase: dropped
	in.AddVSA(14823, 1, []byte("employee"))                 // Aruba-User-Role
	in.Add(packet.AttrSessionTimeout, []byte{0, 0, 14, 16}) // Session-Timeout
	p, err := in.Finish([]byte("s"), make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	attrs := ReplyAttrs(p)
	if len(attrs) != 6 {
		t.Fatalf("ReplyAttrs kept %d attributes: %+v", len(attrs), attrs)
	}
	// A record imported with per-session material does not replay it either.
	attrs = append(attrs, cache.Attr{Type: packet.AttrEAPMessage, Value: []byte{3, 1, 0, 4}})
	out := packet.New(nil, packet.CodeAccessAccept, 1, nil)
	AppendAttrs(&out, attrs)
	q, err := out.Finish([]byte("s"), make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{64, 6, 1, 0, 0, 13, 65, 6, 0, 0, 0, 6, 81, 6, 1, '1', '0', '0', 83, 6, 2, 0, 0, 5}
	want = append(want, 26, 16, 0, 0, 0x39, 0xe7, 1, 10, 'e', 'm', 'p', 'l', 'o', 'y', 'e', 'e', 27, 6, 0, 0, 14, 16)
	if got := q[packet.HeaderLen:]; !bytes.Equal(got, want) {
		t.Errorf("replayed\n%x\nwant\n%x", got, want)
	}
}

// TestStandardAttrTable: the table Replayable and tagged read for standard attributes says what
// the dictionary says, for every type, whatever the tag or value; vendor attributes still go to
// the dictionary.
func TestStandardAttrTable(t *testing.T) {
	for i := range 256 {
		typ := uint8(i)
		for _, a := range []cache.Attr{{Type: typ}, {Type: typ, Tag: 1, Value: []byte("300")}} {
			if Replayable(a) != replayable(a) {
				t.Errorf("type %d: Replayable %v, dictionary %v", typ, Replayable(a), replayable(a))
			}
		}
		gt, gi := tagged(typ)
		wt, wi := taggedDef(typ)
		if gt != wt || gi != wi {
			t.Errorf("type %d: tagged %v %v, dictionary %v %v", typ, gt, gi, wt, wi)
		}
	}
	for _, tc := range []struct {
		a    cache.Attr
		want bool
	}{
		{cache.Attr{Type: packet.AttrUserName}, false},
		{cache.Attr{Type: packet.AttrTunnelPrivateGroupID, Tag: 1}, true},
		{cache.Attr{Type: packet.AttrVendorSpecific, Vendor: packet.VendorMicrosoft, VendorType: msMPPESendKey}, false},
		{cache.Attr{Type: packet.AttrVendorSpecific, Vendor: vendorAruba, VendorType: arubaUserVlan}, true},
	} {
		if got := Replayable(tc.a); got != tc.want {
			t.Errorf("Replayable(%+v) = %v, want %v", tc.a, got, tc.want)
		}
	}
	if isTagged, integer := tagged(packet.AttrTunnelType); !isTagged || !integer {
		t.Error("Tunnel-Type: not a tagged integer (RFC 2868 §3.1)")
	}
}
