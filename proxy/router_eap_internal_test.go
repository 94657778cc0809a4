package proxy

import (
	"context"
	"testing"
	"time"

	"mxedge/proxy/packet"
)

// eapRequest builds an Access-Request whose EAP-Message attributes carry eap (split at 253
// octets, RFC 3579 §3.1).
func eapRequest(tb testing.TB, eap []byte) packet.Packet {
	tb.Helper()
	b := packet.New(nil, packet.CodeAccessRequest, 7, make([]byte, packet.AuthLen))
	b.AddMA()
	b.AddString(packet.AttrUserName, "anonymous")
	if eap != nil {
		b.AddEAP(eap)
	}
	p, err := b.Finish([]byte("s"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// eapPacket is an EAP-Response (RFC 3748 §4) of type typ with data after the type octet.
func eapPacket(typ byte, data ...byte) []byte {
	n := 5 + len(data)
	return append([]byte{2, 9, byte(n >> 8), byte(n), typ}, data...)
}

func TestCheapEAP(t *testing.T) {
	tlsData := make([]byte, 600) // a client flight: flags, then TLS records
	tlsData[0] = 0x00
	first := make([]byte, 1200) // a first fragment: L and M flags, TLS Message Length, TLS data
	first[0] = 0x80 | 0x40
	last := make([]byte, 300) // the last fragment: no M flag
	for _, tc := range []struct {
		name  string
		eap   []byte
		cheap bool
	}{
		{"no EAP-Message (MAB, PAP)", nil, true},
		{"Response/Identity", eapPacket(1, []byte("anonymous")...), true},
		{"EAP-TLS ACK", eapPacket(13, 0x00), true},
		{"Nak", eapPacket(3, 13), true},
		{"EAP-TLS fragment, more to follow", eapPacket(13, first...), true},
		{"EAP-TLS client flight", eapPacket(13, tlsData...), false},
		{"EAP-TLS last fragment", eapPacket(13, last...), false},
		{"shorter than an EAP header", []byte{2, 9, 0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cheapEAP(eapRequest(t, tc.eap)); got != tc.cheap {
				t.Errorf("cheapEAP = %v, want %v", got, tc.cheap)
			}
		})
	}
}

// gateFallback takes every request and, in Serve, waits for release (bounded) after saying it
// was called; the answer is nil, which ends the request as unanswered.
type gateFallback struct {
	called  chan struct{}
	release chan struct{}
}

func (f *gateFallback) Takes(*Request) bool { return true }

func (f *gateFallback) Serve(context.Context, *Request, error) (packet.Packet, error) {
	f.called <- struct{}{}
	select {
	case <-f.release:
	case <-time.After(5 * time.Second):
	}
	return nil, nil
}

// TestRouterEAPStepsWithoutHandshakeWorkOnReader: the EAP steps a local server answers without
// handshake work run on the goroutine that called ServeRADIUS (the socket's reader); a step that
// carries TLS data runs on its own goroutine, so ServeRADIUS returns while it is being served.
func TestRouterEAPStepsWithoutHandshakeWorkOnReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		eap    []byte
		inline bool
	}{
		{"identity", eapPacket(1, []byte("anonymous")...), true},
		{"ack", eapPacket(13, 0x00), true},
		{"client flight", eapPacket(13, make([]byte, 600)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &gateFallback{called: make(chan struct{}, 1), release: make(chan struct{})}
			r := NewRouter(RouterOptions{Fallback: fb}, nil, nil)
			req := &Request{Client: &Client{Name: "sw1", Secret: []byte("s")}, Packet: eapRequest(t, tc.eap)}
			returned := make(chan struct{})
			go func() {
				r.ServeRADIUS(req)
				close(returned)
			}()
			select {
			case <-fb.called:
			case <-time.After(5 * time.Second):
				t.Fatal("Serve not called")
			}
			select {
			case <-returned:
				if tc.inline {
					t.Fatal("ServeRADIUS returned before Serve did: the step left the reader")
				}
			case <-time.After(50 * time.Millisecond):
				if !tc.inline {
					t.Fatal("ServeRADIUS waits for Serve: a step with handshake work holds the reader")
				}
			}
			close(fb.release)
			<-returned
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.Wait(ctx); err != nil {
				t.Fatalf("request not ended: %v", err)
			}
			if !req.claimed.Load() {
				t.Fatal("request neither answered nor dropped")
			}
		})
	}
}
