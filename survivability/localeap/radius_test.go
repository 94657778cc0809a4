package localeap

import (
	"bytes"
	"testing"

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
		orig := bytes.Clone(p)
		if got := readRequest(p).eap; !bytes.Equal(got, eap) {
			t.Errorf("%d: joined EAP differs", n)
		}
		if !bytes.Equal(p, orig) {
			t.Errorf("%d: joining the EAP-Message attributes changed the packet", n)
		}
	}
}
