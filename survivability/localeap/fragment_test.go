package localeap

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability/eaptls"
)

func TestFragmentSize(t *testing.T) {
	tests := []struct {
		name            string
		configured, mtu int
		want            int
	}{
		{"defaults, no Framed-MTU", 0, 0, DefaultFragmentSize},
		{"defaults, Framed-MTU 1400 (eapol_test)", 0, 1400, 1386},
		{"defaults, Framed-MTU 1500 capped for a 1500-byte IP packet", 0, 1500, maxAutoFragment},
		{"defaults, jumbo Framed-MTU capped", 0, 9000, maxAutoFragment},
		{"defaults, small Framed-MTU", 0, 300, 286},
		{"defaults, Framed-MTU below the minimum", 0, 40, eaptls.MinFragmentSize},
		{"configured, no Framed-MTU", 2000, 0, 2000},
		{"configured below Framed-MTU", 600, 1400, 600},
		{"configured above Framed-MTU", 2000, 1400, 1386},
		{"configured, jumbo Framed-MTU", 3000, 9000, 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fragmentSize(tt.configured, tt.mtu); got != tt.want {
				t.Errorf("fragmentSize(%d, %d) = %d, want %d", tt.configured, tt.mtu, got, tt.want)
			}
		})
	}
}

// TestFramedMTUFragments runs whole conversations whose server flight (a chain of two
// intermediates, about 1.6 KB) needs fragmenting, with and without Framed-MTU in the NAS's
// requests: every server fragment carries the expected TLS data, the first one as much as allowed,
// and the conversation ends in an Access-Accept.
func TestFramedMTUFragments(t *testing.T) {
	l := testLab(t)
	tests := []struct {
		name            string
		configured, mtu int
		want            int
	}{
		{"no Framed-MTU", 0, 0, DefaultFragmentSize},
		{"Framed-MTU 1400", 0, 1400, 1386},
		{"Framed-MTU 600", 0, 600, 586},
		{"configured 800, Framed-MTU 1400", 800, 1400, 800},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t)
			o.FragmentSize = tt.configured
			h, _ := newHandler(t, o)
			cfg := l.clientConfig(cliECDSA)
			c := eaptls.NewClient(cfg)
			defer c.Close()
			eap := c.Identity(1)
			var state []byte
			var frags []int
			for id := uint8(0); ; id++ {
				req := requestWithMTU(t, id, eap, state, tt.mtu)
				resp := h.Serve(req)
				if resp == nil {
					t.Fatal("request discarded")
				}
				rep, st := replyEAP(t, req, resp)
				if resp.Code() == packet.CodeAccessAccept {
					break
				}
				if resp.Code() != packet.CodeAccessChallenge {
					t.Fatalf("got %v, fragments %v", resp.Code(), frags)
				}
				p, err := eaptls.ParsePacket(rep)
				if err != nil {
					t.Fatal(err)
				}
				if p.Type == eaptls.TypeTLS {
					m, err := eaptls.ParseMessage(p.Data)
					if err != nil {
						t.Fatal(err)
					}
					if len(m.Data) > 0 {
						frags = append(frags, len(m.Data))
					}
				}
				next, done, err := c.Step(rep)
				if done {
					t.Fatalf("supplicant stopped: %v", err)
				}
				eap, state = next, st
				if id > 100 {
					t.Fatal("conversation does not end")
				}
			}
			if len(frags) < 2 || frags[0] != tt.want {
				t.Fatalf("server fragments %v: want the flight cut into fragments of %d", frags, tt.want)
			}
			for _, n := range frags {
				if n > tt.want {
					t.Errorf("fragment of %d bytes, more than %d (fragments %v)", n, tt.want, frags)
				}
			}
		})
	}
}

// requestWithMTU is accessRequest from testMAC with Framed-MTU mtu (none when 0).
func requestWithMTU(tb testing.TB, id uint8, eap, state []byte, mtu int) *proxy.Request {
	tb.Helper()
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, id, auth[:])
	b.AddString(packet.AttrUserName, "anonymous@example.test")
	b.AddString(packet.AttrCallingStationID, testMAC)
	if mtu > 0 {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(mtu))
		b.Add(attrFramedMTU, v[:])
	}
	addEAP(&b, eap)
	if state != nil {
		b.Add(packet.AttrState, state)
	}
	b.AddMA()
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &proxy.Request{Client: nasClient(), Packet: p, Received: time.Now()}
}
