package localeap

import (
	"testing"

	"mxedge/proxy/packet"
	"mxedge/survivability/eaptls"
)

// FuzzServe feeds arbitrary EAP-Message payloads, with a valid Message-Authenticator, through
// Serve: as the first packet of a conversation, or as the answer to the EAP-TLS Start of a live
// one (optionally with the expected EAP Identifier patched in, to get past the sequence check into
// EAP-TLS reassembly and TLS). Every answer must be a well-formed, signed RADIUS response.
func FuzzServe(f *testing.F) {
	l := testLab(f)
	o := l.options(f)
	o.MaxConversations = 8
	h, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	c := eaptls.NewClient(l.clientConfig(cliECDSA))
	hello, _, err := c.Step([]byte{1, 2, 0, 6, 13, 0x20}) // EAP-TLS Start
	c.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(byte(0), identityResponse(1, "anonymous"))
	f.Add(byte(3), hello)
	f.Add(byte(3), hello[:100])
	f.Add(byte(3), []byte{2, 0, 0, 6, 3, 25})
	f.Add(byte(3), []byte{2, 0, 0, 10, 13, 0xc0, 0, 0, 0x10, 0})
	f.Add(byte(3), []byte{2, 0, 0, 10, 13, 0x80, 0xff, 0xff, 0xff, 0xff})
	f.Add(byte(1), []byte{2, 0, 0, 6, 13, 0})
	f.Add(byte(0), []byte{2})
	f.Fuzz(func(t *testing.T, mode byte, eap []byte) {
		if len(eap) > 3000 {
			eap = eap[:3000]
		}
		defer h.closeAll()
		var state []byte
		if mode&1 != 0 {
			var start []byte
			start, state = startConversation(t, h)
			if mode&2 != 0 && len(eap) >= 2 {
				eap = append([]byte(nil), eap...)
				eap[1] = start[1]
			}
		}
		req := accessRequest(t, 2, eap, state, testMAC, true)
		resp := h.Serve(req)
		if resp == nil {
			t.Fatal("request with a valid Message-Authenticator discarded")
		}
		if _, err := packet.Parse(resp); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		switch resp.Code() {
		case packet.CodeAccessChallenge, packet.CodeAccessReject:
		default:
			t.Fatalf("reply %v to one packet", resp.Code())
		}
		replyEAP(t, req, resp)
	})
}
