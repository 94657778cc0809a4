package eaptls

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// half is a conversation driven by hand up to some point.
type half struct {
	s   *Server
	c   *Client
	req []byte // last server request
	id  uint8  // its identifier
}

// begin runs Identity and Start and returns the Start request.
func begin(tb testing.TB, scfg *ServerConfig, ccfg *ClientConfig) *half {
	tb.Helper()
	h := &half{s: NewServer(scfg), c: NewClient(ccfg)}
	tb.Cleanup(h.s.Close)
	tb.Cleanup(h.c.Close)
	req, err := h.s.Start(h.c.Identity(3))
	if err != nil {
		tb.Fatal(err)
	}
	h.setReq(tb, req)
	return h
}

func (h *half) setReq(tb testing.TB, req []byte) {
	tb.Helper()
	p, err := ParsePacket(req)
	if err != nil {
		tb.Fatal(err)
	}
	h.req, h.id = req, p.Identifier
}

// advance lets the real client answer n server requests.
func (h *half) advance(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		resp, done, err := h.c.Step(h.req)
		if done {
			tb.Fatalf("client done early: %v", err)
		}
		req, st, err := h.s.Step(resp)
		if st != Continue {
			tb.Fatalf("server %v: %v", st, err)
		}
		h.setReq(tb, req)
	}
}

// clientResponse is the real client's answer to the current request,
// without giving it to the server.
func (h *half) clientResponse(tb testing.TB) []byte {
	tb.Helper()
	resp, done, err := h.c.Step(h.req)
	if done {
		tb.Fatalf("client done: %v", err)
	}
	return resp
}

func tlsResp(id uint8, m Message) []byte { return tlsPacket(CodeResponse, id, m) }

func TestMalformedConversation(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name    string
		frag    int
		version uint16
		// steps: client answers to let through before the injection
		steps   int
		inject  func(tb testing.TB, h *half) []byte
		wantErr error
	}{
		{name: "truncated packet", inject: func(_ testing.TB, h *half) []byte { return []byte{2, h.id, 0} }, wantErr: ErrMalformed},
		{name: "length beyond packet", inject: func(_ testing.TB, h *half) []byte { return []byte{2, h.id, 0, 50, 13, 0} }, wantErr: ErrMalformed},
		{name: "request instead of response", inject: func(_ testing.TB, h *half) []byte {
			return tlsPacket(CodeRequest, h.id, Message{})
		}, wantErr: ErrMalformed},
		{name: "success from peer", inject: func(_ testing.TB, h *half) []byte { return []byte{3, h.id, 0, 4} }, wantErr: ErrMalformed},
		{name: "wrong identifier", inject: func(tb testing.TB, h *half) []byte {
			b := h.clientResponse(tb)
			b[1]++
			return b
		}, wantErr: ErrOutOfOrder},
		{name: "eap-md5 answer", inject: func(_ testing.TB, h *half) []byte {
			return Packet{Code: CodeResponse, Identifier: h.id, Type: 4, Data: []byte{1}}.mustMarshal()
		}, wantErr: ErrMalformed},
		{name: "eap-tls without flags", inject: func(_ testing.TB, h *half) []byte {
			return Packet{Code: CodeResponse, Identifier: h.id, Type: TypeTLS}.mustMarshal()
		}, wantErr: ErrMalformed},
		{name: "L flag without length", inject: func(_ testing.TB, h *half) []byte {
			return Packet{Code: CodeResponse, Identifier: h.id, Type: TypeTLS, Data: []byte{0xc0, 0}}.mustMarshal()
		}, wantErr: ErrMalformed},
		{name: "start flag from peer", inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Flags: FlagStart})
		}, wantErr: ErrMalformed},
		{name: "ack instead of client hello", inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{})
		}, wantErr: ErrOutOfOrder},
		{name: "tls garbage", inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte("GET / HTTP/1.1\r\n\r\n")})
		}, wantErr: ErrHandshake},
		{name: "tls record garbage", inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte{22, 3, 1, 0, 4, 1, 0, 0, 0}})
		}, wantErr: ErrHandshake},
		{name: "announced length over cap", inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Flags: FlagLength | FlagMore, Length: 1 << 30, Data: []byte{22}})
		}, wantErr: ErrFragmentOverflow},
		{name: "data while server sends fragments", frag: 200, steps: 1, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte{22, 3, 3}})
		}, wantErr: ErrOutOfOrder},
		{name: "fragment length changes", inject: func(tb testing.TB, h *half) []byte {
			return fragmentedThen(tb, h, Message{Flags: FlagLength | FlagMore, Length: 999, Data: []byte{1}})
		}, wantErr: ErrMalformed},
		{name: "last fragment short", inject: func(tb testing.TB, h *half) []byte {
			return fragmentedThen(tb, h, Message{Data: []byte{1}})
		}, wantErr: ErrMalformed},
		{name: "ack while peer fragments", inject: func(tb testing.TB, h *half) []byte {
			return fragmentedThen(tb, h, Message{})
		}, wantErr: ErrOutOfOrder},
		{name: "overrun announced length", inject: func(tb testing.TB, h *half) []byte {
			return fragmentedThen(tb, h, Message{Data: make([]byte, 2000)})
		}, wantErr: ErrFragmentOverflow},
		{name: "replayed client hello", steps: 1, inject: func(tb testing.TB, h *half) []byte {
			b := h.clientResponse(tb)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			b[1]-- // the identifier of the Start request, answered before
			return b
		}, wantErr: ErrOutOfOrder},
		{name: "tls12 alert instead of final ack", frag: MaxFragmentSize, version: tls.VersionTLS12, steps: 2, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte{21, 3, 3, 0, 2, 2, 40}})
		}, wantErr: ErrPeerAlert},
		{name: "flags without data instead of final ack", frag: MaxFragmentSize, version: tls.VersionTLS12, steps: 2, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Flags: FlagMore})
		}, wantErr: ErrOutOfOrder},
		{name: "flags without data instead of fragment ack", frag: 200, steps: 1, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Flags: FlagLength, Length: 0})
		}, wantErr: ErrOutOfOrder},
		{name: "tls13 data instead of ack of commitment", frag: MaxFragmentSize, version: tls.VersionTLS13, steps: 2, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte{23, 3, 3, 0, 1, 0}})
		}, wantErr: ErrOutOfOrder},
		{name: "tls12 peer alert after server flight", frag: MaxFragmentSize, version: tls.VersionTLS12, steps: 1, inject: func(_ testing.TB, h *half) []byte {
			// fatal unknown_ca (RFC 5246 §7.2), as wpa_supplicant sends when it
			// does not trust the server certificate
			return tlsResp(h.id, Message{Data: []byte{21, 3, 3, 0, 2, 2, 48}})
		}, wantErr: ErrPeerAlert},
		{name: "tls13 garbage instead of client finished", frag: MaxFragmentSize, version: tls.VersionTLS13, steps: 1, inject: func(_ testing.TB, h *half) []byte {
			return tlsResp(h.id, Message{Data: []byte{23, 3, 3, 0, 3, 1, 2, 3}})
		}, wantErr: ErrHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := goroutineBaseline(t)
			scfg := serverConfig(p)
			scfg.FragmentSize = tt.frag
			scfg.MaxVersion = tt.version
			ccfg := clientConfig(p, p.clientEC)
			ccfg.MaxVersion = tt.version
			ccfg.FragmentSize = MaxFragmentSize // one ClientHello message
			h := begin(t, scfg, ccfg)
			h.advance(t, tt.steps)
			bad := tt.inject(t, h)
			out, st, err := h.s.Step(bad)
			if st != Failed || !errors.Is(err, tt.wantErr) {
				t.Fatalf("state %v err %v, want %v", st, err, tt.wantErr)
			}
			fp, perr := ParsePacket(out)
			if perr != nil || fp.Code != CodeFailure || fp.Identifier != h.id {
				t.Fatalf("answer % x, want eap-failure id %d", out, h.id)
			}
			if _, _, err := h.s.Step(bad); !errors.Is(err, ErrClosed) {
				t.Errorf("step after failure: %v", err)
			}
			if h.s.Result() != nil {
				t.Error("result after failure")
			}
			h.c.Close()
			check()
		})
	}
}

// fragmentedThen sends the first 100 bytes of the real ClientHello as a first
// fragment announcing its full length, takes the server's ACK, and returns
// next as the following fragment.
func fragmentedThen(tb testing.TB, h *half, next Message) []byte {
	tb.Helper()
	resp := h.clientResponse(tb)
	p, _ := ParsePacket(resp)
	m, _ := ParseMessage(p.Data)
	first := Message{Flags: FlagLength | FlagMore, Length: uint32(len(m.Data)), Data: m.Data[:100]}
	ack, st, err := h.s.Step(tlsResp(h.id, first))
	if st != Continue || err != nil {
		tb.Fatalf("first fragment: %v %v", st, err)
	}
	ap, _ := ParsePacket(ack)
	if am, _ := ParseMessage(ap.Data); ap.Code != CodeRequest || !am.IsACK() {
		tb.Fatalf("no ack: % x", ack)
	}
	h.setReq(tb, ack)
	return tlsResp(h.id, next)
}

func TestServerStepOrder(t *testing.T) {
	p := loadPKI(t)
	s := NewServer(serverConfig(p))
	defer s.Close()
	if _, st, err := s.Step([]byte{2, 1, 0, 6, 13, 0}); st != Failed || !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("step before start: %v %v", st, err)
	}
	if _, err := s.Start([]byte{2, 1, 0, 6, 13, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("start with eap-tls: %v", err)
	}
	c := NewClient(clientConfig(p, p.clientEC))
	if _, err := s.Start(c.Identity(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(c.Identity(1)); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("second start: %v", err)
	}
	s.Close()
	if _, _, err := s.Step(tlsResp(2, Message{})); !errors.Is(err, ErrClosed) {
		t.Errorf("step after close: %v", err)
	}
}

// stripExtension removes one extension from a ClientHello record, fixing
// up the lengths (RFC 8446 §4.1.2 layout).
func stripExtension(tb testing.TB, rec []byte, ext uint16) []byte {
	tb.Helper()
	b := append([]byte(nil), rec...)
	off := recordHeaderLen + handshakeHeadLen + helloVersionLen + helloRandomLen
	off += 1 + int(b[off])                           // session id
	off += 2 + int(binary.BigEndian.Uint16(b[off:])) // cipher suites
	off += 1 + int(b[off])                           // compression
	extStart := off
	extLen := int(binary.BigEndian.Uint16(b[extStart:]))
	for p := extStart + 2; p < extStart+2+extLen; {
		typ := binary.BigEndian.Uint16(b[p:])
		n := 4 + int(binary.BigEndian.Uint16(b[p+2:]))
		if typ != ext {
			p += n
			continue
		}
		b = append(b[:p], b[p+n:]...)
		binary.BigEndian.PutUint16(b[extStart:], uint16(extLen-n))
		binary.BigEndian.PutUint16(b[3:], uint16(len(b)-recordHeaderLen))
		hl := len(b) - recordHeaderLen - handshakeHeadLen
		b[6], b[7], b[8] = byte(hl>>16), byte(hl>>8), byte(hl)
		return b
	}
	tb.Fatalf("extension %d not in client hello", ext)
	return nil
}

func TestNoExtendedMasterSecret(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name      string
		clientMax uint16
		serverMax uint16
		wantErr   error
	}{
		{name: "tls12 only peer", clientMax: tls.VersionTLS12, wantErr: ErrNoEMS},
		{name: "tls12 only server", serverMax: tls.VersionTLS12, wantErr: ErrNoEMS},
		// A peer that offers TLS 1.3 gets it and needs no EMS: the server's
		// reply is its flight, not a failure.
		{name: "tls13 peer", clientMax: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := goroutineBaseline(t)
			scfg := serverConfig(p)
			scfg.MaxVersion = tt.serverMax
			ccfg := clientConfig(p, p.clientEC)
			ccfg.MaxVersion = tt.clientMax
			ccfg.FragmentSize = MaxFragmentSize
			h := begin(t, scfg, ccfg)
			resp := h.clientResponse(t)
			rp, _ := ParsePacket(resp)
			m, _ := ParseMessage(rp.Data)
			hello := stripExtension(t, m.Data, extensionEMS)
			out, st, err := h.s.Step(tlsResp(h.id, Message{Data: hello}))
			if tt.wantErr == nil {
				if st != Continue || err != nil {
					t.Fatalf("state %v err %v", st, err)
				}
			} else if st != Failed || !errors.Is(err, tt.wantErr) {
				t.Fatalf("state %v err %v, want %v", st, err, tt.wantErr)
			} else if fp, _ := ParsePacket(out); fp.Code != CodeFailure {
				t.Errorf("answer % x", out)
			}
			h.s.Close()
			h.c.Close()
			check()
		})
	}
}

// TestAbandonedConversation: a supplicant stops mid-handshake; Close (or the
// timeout) releases the handshake goroutine.
func TestAbandonedConversation(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name    string
		steps   int
		frag    int
		close   bool
		timeout time.Duration
	}{
		{name: "after client hello, close", steps: 1, close: true},
		{name: "mid server fragments, close", steps: 2, frag: 100, close: true},
		{name: "before client finished, close", steps: 1, close: true},
		{name: "after client hello, timeout only", steps: 1, timeout: 400 * time.Millisecond},
		{name: "mid fragments, timeout only", steps: 2, frag: 100, timeout: 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := goroutineBaseline(t)
			scfg := serverConfig(p)
			scfg.FragmentSize = tt.frag
			scfg.HandshakeTimeout = tt.timeout
			ccfg := clientConfig(p, p.clientEC)
			ccfg.FragmentSize = MaxFragmentSize
			ccfg.HandshakeTimeout = tt.timeout
			h := &half{s: NewServer(scfg), c: NewClient(ccfg)}
			req, err := h.s.Start(h.c.Identity(1))
			if err != nil {
				t.Fatal(err)
			}
			h.setReq(t, req)
			h.advance(t, tt.steps)
			if tt.close {
				h.s.Close()
				h.s.Close() // idempotent
				h.c.Close()
			}
			// Without Close the goroutines exit on their own once the
			// timeout passes; nothing else is called.
			check()
			if !tt.close {
				resp := tlsResp(h.id, Message{})
				out, st, err := h.s.Step(resp)
				if st != Failed || !errors.Is(err, ErrTimeout) {
					t.Fatalf("step after timeout: %v %v", st, err)
				}
				if fp, _ := ParsePacket(out); fp.Code != CodeFailure {
					t.Errorf("answer % x", out)
				}
			}
		})
	}
}

// TestTimeoutFakeClock runs the default 30 s timeout on synctest's clock:
// the handshake goroutine exits by itself at the deadline, and the next Step
// fails with ErrTimeout.
func TestTimeoutFakeClock(t *testing.T) {
	p := loadPKI(t)
	synctest.Test(t, func(t *testing.T) {
		ccfg := clientConfig(p, p.clientEC)
		ccfg.FragmentSize = MaxFragmentSize
		h := &half{s: NewServer(serverConfig(p)), c: NewClient(ccfg)}
		req, err := h.s.Start(h.c.Identity(1))
		if err != nil {
			t.Fatal(err)
		}
		h.setReq(t, req)
		h.advance(t, 1)
		time.Sleep(DefaultHandshakeTimeout - time.Second)
		synctest.Wait()
		select {
		case <-h.s.pipe.exited:
			t.Fatal("handshake goroutine gone before the deadline")
		default:
		}
		resp := h.clientResponse(t) // still in time: the client's flight
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case <-h.s.pipe.exited:
		default:
			t.Fatal("handshake goroutine alive after the deadline")
		}
		out, st, err := h.s.Step(resp)
		if st != Failed || !errors.Is(err, ErrTimeout) {
			t.Fatalf("step after deadline: %v %v", st, err)
		}
		if fp, _ := ParsePacket(out); fp.Code != CodeFailure {
			t.Errorf("answer % x", out)
		}
		// The client's own goroutine also honours its deadline.
		synctest.Wait()
		select {
		case <-h.c.pipe.exited:
		default:
			t.Fatal("client handshake goroutine alive after its deadline")
		}
	})
}

// TestCloseConcurrentWithStep: a reaper may Close while the conversation is
// stepping; -race checks the locking.
func TestCloseConcurrentWithStep(t *testing.T) {
	p := loadPKI(t)
	check := goroutineBaseline(t)
	for range 20 {
		ccfg := clientConfig(p, p.clientEC)
		ccfg.FragmentSize = MaxFragmentSize
		h := begin(t, serverConfig(p), ccfg)
		resp := h.clientResponse(t)
		var wg sync.WaitGroup
		wg.Go(func() { _, _, _ = h.s.Step(resp) })
		wg.Go(h.s.Close)
		wg.Wait()
		h.c.Close()
	}
	check()
}

// TestClientRetransmission: a retransmitted request (same bytes) gets the
// same response and does not advance the client.
func TestClientRetransmission(t *testing.T) {
	p := loadPKI(t)
	scfg := serverConfig(p)
	scfg.FragmentSize = 200
	ccfg := clientConfig(p, p.clientEC)
	h := begin(t, scfg, ccfg)
	h.advance(t, 2)
	r1 := h.clientResponse(t)
	r2, done, err := h.c.Step(h.req)
	if done || err != nil || string(r1) != string(r2) {
		t.Fatalf("retransmission: done %v err %v same %v", done, err, string(r1) == string(r2))
	}
	req, st, err := h.s.Step(r2)
	if st != Continue || err != nil {
		t.Fatal(st, err)
	}
	h.setReq(t, req)
	for range 100 {
		resp, done, err := h.c.Step(h.req)
		if done {
			t.Fatalf("client done: %v", err)
		}
		req, st, err := h.s.Step(resp)
		if st == Succeeded {
			if _, done, err := h.c.Step(req); !done || err != nil {
				t.Fatalf("client on success: %v %v", done, err)
			}
			return
		}
		if st != Continue {
			t.Fatal(st, err)
		}
		h.setReq(t, req)
	}
	t.Fatal("no success")
}

func TestClientProtocolErrors(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
	}{
		{name: "premature success", pkt: []byte{3, 1, 0, 4}, wantErr: ErrOutOfOrder},
		{name: "failure", pkt: []byte{4, 1, 0, 4}, wantErr: ErrFailure},
		{name: "response", pkt: tlsResp(1, Message{}), wantErr: ErrMalformed},
		{name: "tls data before start", pkt: tlsPacket(CodeRequest, 1, Message{Data: []byte{1}}), wantErr: ErrOutOfOrder},
		{name: "garbage", pkt: []byte{1, 2}, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(clientConfig(p, p.clientEC))
			defer c.Close()
			_, done, err := c.Step(tt.pkt)
			if !done || !errors.Is(err, tt.wantErr) {
				t.Fatalf("done %v err %v, want %v", done, err, tt.wantErr)
			}
		})
	}
	c := NewClient(clientConfig(p, p.clientEC))
	defer c.Close()
	if _, _, err := c.Step(tlsPacket(CodeRequest, 1, Message{Flags: FlagStart})); err != nil {
		t.Fatal(err)
	}
	if _, done, err := c.Step(tlsPacket(CodeRequest, 2, Message{Flags: FlagStart})); !done || !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("second start: %v %v", done, err)
	}
	if err := (ClientConfig{}).Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("client config without roots: %v", err)
	}
	if _, done, err := NewClient(&ClientConfig{}).Step([]byte{1, 1, 0, 5, 1}); !done || !errors.Is(err, ErrConfig) {
		t.Errorf("step with bad config: %v %v", done, err)
	}
}

// FuzzServerStep feeds arbitrary responses to a started conversation: never
// a panic, always EAP-Failure with an error or a well-formed request.
func FuzzServerStep(f *testing.F) {
	p := loadPKI(f)
	scfg := serverConfig(p)
	f.Add([]byte{2, 2, 0, 6, 13, 0})
	f.Add([]byte{2, 2, 0, 11, 13, 0xc0, 0, 0, 0, 9, 22})
	f.Add(tlsResp(2, Message{Data: []byte{22, 3, 1, 0, 4, 1, 0, 0, 0}}))
	f.Add(tlsResp(2, Message{Flags: FlagMore, Data: []byte{22, 3, 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewServer(scfg)
		defer s.Close()
		if _, err := s.Start([]byte{2, 1, 0, 5, 1}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			out, st, err := s.Step(b)
			pk, perr := ParsePacket(out)
			switch {
			case st == Failed && err != nil:
				if perr != nil || pk.Code != CodeFailure {
					t.Fatalf("failed with % x", out)
				}
			case st == Continue && err == nil:
				if perr != nil || pk.Code != CodeRequest {
					t.Fatalf("continue with % x", out)
				}
			default:
				t.Fatalf("state %v err %v", st, err)
			}
			if st != Continue {
				return
			}
			if len(b) > 1 {
				b[1] = pk.Identifier // keep the identifier in step to go deeper
			}
		}
	})
}

// FuzzClientStep feeds arbitrary requests to a client: never a panic; a
// response, when there is one, is a well-formed EAP-Response.
func FuzzClientStep(f *testing.F) {
	p := loadPKI(f)
	ccfg := clientConfig(p, p.clientEC)
	f.Add([]byte{1, 1, 0, 6, 13, 0x20}, []byte{1, 2, 0, 6, 13, 0})
	f.Add([]byte{1, 1, 0, 5, 1}, []byte{3, 1, 0, 4})
	f.Add([]byte{1, 1, 0, 6, 13, 0x20}, []byte{1, 2, 0, 11, 13, 0xc0, 0, 0, 0, 9, 22})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		c := NewClient(ccfg)
		defer c.Close()
		for _, in := range [][]byte{a, b} {
			resp, done, err := c.Step(in)
			if done {
				return
			}
			if err != nil {
				t.Fatalf("error without done: %v", err)
			}
			if pk, perr := ParsePacket(resp); perr != nil || pk.Code != CodeResponse {
				t.Fatalf("response % x", resp)
			}
		}
	})
}
