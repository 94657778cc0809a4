package localeap

import (
	"bytes"
	"testing"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// TestEAPSplitJoin: EAP packets of every size around the 253-octet boundary survive
// addEAP/readRequest (RFC 3579 §3.1).
func TestEAPSplitJoin(t *testing.T) {
	for _, n := range []int{4, 252, 253, 254, 506, 507, 1000, 3000} {
		eap := make([]byte, n)
		for i := range eap {
			eap[i] = byte(i)
		}
		b := packet.New(nil, packet.CodeAccessChallenge, 1, nil)
		addEAP(&b, eap)
		p, err := b.Finish([]byte(nasSecret), make([]byte, 16))
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		attrs := 0
		for it := p.Attrs(); ; attrs++ {
			if _, v, ok := it.Next(); !ok {
				break
			} else if len(v) > 253 {
				t.Fatalf("%d: attribute of %d octets", n, len(v))
			}
		}
		if want := (n + 252) / 253; attrs != want {
			t.Errorf("%d octets in %d attributes, want %d", n, attrs, want)
		}
		if got := readRequest(p).eap; !bytes.Equal(got, eap) {
			t.Errorf("%d: joined EAP differs", n)
		}
	}
}

func TestAppendAuthorization(t *testing.T) {
	tests := []struct {
		name string
		attr cache.Attr
		want []byte // encoded attribute
	}{
		{"tunnel-type", cache.Attr{Type: packet.AttrTunnelType, Value: []byte{0, 0, 13}}, []byte{64, 6, 0, 0, 0, 13}},
		{"tunnel-type tagged", cache.Attr{Type: packet.AttrTunnelType, Tag: 1, Value: []byte{0, 0, 13}}, []byte{64, 6, 1, 0, 0, 13}},
		{"group-id", cache.Attr{Type: packet.AttrTunnelPrivateGroupID, Value: []byte("30")}, []byte{81, 4, '3', '0'}},
		{"group-id tagged", cache.Attr{Type: packet.AttrTunnelPrivateGroupID, Tag: 2, Value: []byte("30")}, []byte{81, 5, 2, '3', '0'}},
		{"vsa", cache.Attr{Type: packet.AttrVendorSpecific, Vendor: 9, VendorType: 1, Value: []byte("a=b")}, []byte{26, 11, 0, 0, 0, 9, 1, 5, 'a', '=', 'b'}},
		{"opaque vsa", cache.Attr{Type: packet.AttrVendorSpecific, Vendor: 9, Value: []byte{0xff}}, []byte{26, 7, 0, 0, 0, 9, 0xff}},
		{"filter-id", cache.Attr{Type: packet.AttrFilterID, Value: []byte("staff")}, []byte{11, 7, 's', 't', 'a', 'f', 'f'}},
	}
	for _, tt := range tests {
		b := packet.New(nil, packet.CodeAccessAccept, 1, nil)
		appendAuthorization(&b, []cache.Attr{tt.attr})
		p, err := b.Finish([]byte(nasSecret), make([]byte, 16))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := []byte(p[packet.HeaderLen:]); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, got, tt.want)
		}
	}
	if v := vlanOf(vlanTriplet("42")); v != "42" {
		t.Errorf("vlanOf(triplet) = %q", v)
	}
}
