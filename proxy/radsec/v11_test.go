package radsec

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

// handshake runs one TLS handshake over a pipe: a client offering clientALPN, a server configured
// with server. It returns both ends' states and errors.
func handshake(t *testing.T, clientALPN []string, server Version) (cs, ss tls.ConnectionState, cerr, serr error) {
	t.Helper()
	lab := pkitest.Must(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ccfg := lab.ClientTLS()
	ccfg.ServerName = "localhost"
	ccfg.NextProtos = clientALPN
	scfg := lab.ServerTLS()
	server.Apply(scfg)
	tc, ts := tls.Client(a, ccfg), tls.Server(b, scfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		serr = ts.Handshake()
		if serr != nil {
			b.Close()
		}
	}()
	cerr = tc.Handshake()
	if cerr != nil {
		a.Close()
	}
	<-done
	return tc.ConnectionState(), ts.ConnectionState(), cerr, serr
}

// TestALPNMatrix is RFC 9765's table of outcomes ("Tabular Summary") against crypto/tls: a classic
// client that sends no ALPN, or only radius/1.0, works with a server on allow (crypto/tls with
// NextProtos would refuse a client whose ALPN list has nothing in common, never one without ALPN);
// require refuses what is not 1.1, off never answers ALPN.
func TestALPNMatrix(t *testing.T) {
	none := []string(nil)
	for _, tc := range []struct {
		name      string
		client    []string
		clientV   Version // how the client judges the outcome
		server    Version
		want11    bool
		refused   bool // the handshake fails (no_application_protocol) or CheckNegotiated refuses
		handshake bool // the refusal is the TLS alert itself
	}{
		{"no ALPN to allow", none, VersionOff, VersionAllow, false, false, false},
		{"no ALPN to off", none, VersionOff, VersionOff, false, false, false},
		{"no ALPN to require", none, VersionOff, VersionRequire, false, true, false},
		{"1.0 to allow", []string{ALPN10}, VersionOff, VersionAllow, false, false, false},
		{"1.0 to require", []string{ALPN10}, VersionOff, VersionRequire, false, true, true},
		{"allow to allow", VersionAllow.NextProtos(), VersionAllow, VersionAllow, true, false, false},
		{"allow to off", VersionAllow.NextProtos(), VersionAllow, VersionOff, false, false, false},
		{"allow to require", VersionAllow.NextProtos(), VersionAllow, VersionRequire, true, false, false},
		{"require to allow", VersionRequire.NextProtos(), VersionRequire, VersionAllow, true, false, false},
		{"require to off", VersionRequire.NextProtos(), VersionRequire, VersionOff, false, true, false},
		{"other ALPN to allow", []string{"h2"}, VersionOff, VersionAllow, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, ss, cerr, serr := handshake(t, tc.client, tc.server)
			if tc.handshake {
				if serr == nil {
					t.Fatal("handshake succeeded, want the no_application_protocol alert")
				}
				return
			}
			if cerr != nil || serr != nil {
				t.Fatalf("handshake: client %v, server %v", cerr, serr)
			}
			if Is11(cs) != tc.want11 || Is11(ss) != tc.want11 {
				t.Fatalf("client negotiated %q, server %q; want 1.1 %v", cs.NegotiatedProtocol, ss.NegotiatedProtocol, tc.want11)
			}
			cerr, serr = CheckNegotiated(tc.clientV, cs), CheckNegotiated(tc.server, ss)
			if refused := cerr != nil || serr != nil; refused != tc.refused {
				t.Fatalf("refused: client %v, server %v; want refused %v", cerr, serr, tc.refused)
			}
			if tc.refused && !errors.Is(cerr, ErrVersionRequired) && !errors.Is(serr, ErrVersionRequired) {
				t.Fatalf("refusal is not ErrVersionRequired: %v / %v", cerr, serr)
			}
		})
	}
}

// TestVersionOff: off offers and answers nothing, as before RADIUS/1.1, and leaves other ALPN
// names a configuration lists alone.
func TestVersionOff(t *testing.T) {
	cfg := &tls.Config{NextProtos: []string{ALPN11, ALPN10}}
	VersionOff.Apply(cfg)
	if cfg.NextProtos != nil || VersionOf(cfg) != VersionOff {
		t.Fatalf("off: NextProtos %q", cfg.NextProtos)
	}
	cfg.NextProtos = []string{"x"}
	VersionAllow.Apply(cfg)
	if VersionOf(cfg) != VersionAllow || len(cfg.NextProtos) != 3 || cfg.NextProtos[0] != ALPN11 || cfg.NextProtos[2] != "x" {
		t.Fatalf("allow: NextProtos %q", cfg.NextProtos)
	}
	for _, s := range []string{"allow", "off", "require"} {
		v, err := ParseVersion(s)
		if err != nil || v.String() != s {
			t.Fatalf("%s: %v %v", s, v, err)
		}
	}
	if _, err := ParseVersion("1.1"); err == nil {
		t.Fatal("ParseVersion accepts 1.1")
	}
}

// serve11 answers RADIUS/1.1 requests the way a mxedge listener does: through a Translator into
// classic form, answered by a classic Access-Accept with a hidden Tunnel-Password, back to 1.1.
// It checks every request's header and returns what it saw.
func serve11(t *testing.T, nc net.Conn, seen chan<- packet.Packet) {
	tr := NewTranslator([]byte("peer-secret"), time.Minute)
	r := bufio.NewReader(nc)
	for {
		p, err := ReadPacket(r)
		if err != nil {
			return
		}
		seen <- append(packet.Packet(nil), p...)
		classic, err := tr.Request(p)
		if err != nil {
			t.Error(err)
			return
		}
		code := packet.CodeAccessAccept
		if classic.Code() == packet.CodeAccountingRequest {
			code = packet.CodeAccountingResponse
		}
		b := packet.NewResponse(nil, classic, code)
		b.AddTagged(packet.AttrTunnelPassword, 1, packet.EncryptSalted(nil, []byte("tunnelpw"), [2]byte{0x81, 1}, []byte("peer-secret"), classic.Authenticator()))
		resp, err := b.Finish([]byte("peer-secret"), classic.Authenticator())
		if err != nil {
			t.Error(err)
			return
		}
		r11, err := tr.Response(resp)
		if err != nil {
			t.Error(err)
			return
		}
		nc.Write(r11)
	}
}

// TestConn11 runs a RADIUS/1.1 connection: requests carry a Token, Reserved-1 and Reserved-2 zero
// and no Message-Authenticator; a caller that builds classic packets gets a classic reply it can
// verify with the connection's secret, a native caller the 1.1 reply; a reply with a Token nobody
// waits for is discarded. The Status-Server watchdog works the same way.
func TestConn11(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		obs := new(countObserver)
		c := NewConn(client, ConnOptions{RADIUS11: true, StatusInterval: time.Hour, DeadAfter: time.Hour, Observer: obs})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx)
		seen := make(chan packet.Packet, 8)
		go serve11(t, server, seen)

		type result struct {
			p   packet.Packet
			err error
		}
		res := make(chan result, 1)
		var classicReq packet.Packet
		c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) {
			p, err := accessRequest(dst, id, "classic", 0)
			classicReq = p
			return p, err
		}, time.Now().Add(time.Second), func(p packet.Packet, err error) { res <- result{p, err} })
		req := <-seen
		if req[1] != 0 || req.Has(packet.AttrMessageAuthenticator) {
			t.Fatalf("1.1 request: Reserved-1 %d, Message-Authenticator %v", req[1], req.Has(packet.AttrMessageAuthenticator))
		}
		for _, b := range req[8:packet.HeaderLen] {
			if b != 0 {
				t.Fatalf("Reserved-2 not zero: %x", req[8:packet.HeaderLen])
			}
		}
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !packet.CheckResponseAuthenticator(r.p, classicReq.Authenticator(), []byte(DefaultSecret)) ||
			packet.CheckResponseMA(r.p, classicReq.Authenticator(), []byte(DefaultSecret)) != packet.MAValid {
			t.Fatal("classic caller cannot verify its reply")
		}
		v, _ := r.p.Attr(packet.AttrTunnelPassword)
		if pw, err := packet.DecryptSalted(nil, v[1:], []byte(DefaultSecret), classicReq.Authenticator()); err != nil || string(pw) != "tunnelpw" {
			t.Fatalf("Tunnel-Password for the classic caller: %q %v", pw, err)
		}

		// Native: built without MA or hiding, the 1.1 reply handed over as is.
		c.ExchangeNative(nil, func(dst []byte, id uint8) (packet.Packet, error) {
			b := packet.New(dst, packet.CodeAccountingRequest, 0, nil)
			b.AddString(packet.AttrUserName, "native")
			p := built(t, b)
			return p, nil
		}, time.Now().Add(time.Second), func(p packet.Packet, err error) { res <- result{p, err} })
		req2 := <-seen
		r = <-res
		if r.err != nil || r.p.Code() != packet.CodeAccountingResponse || r.p.Token() != req2.Token() {
			t.Fatalf("native: %v, %v token %#x want %#x", r.err, r.p.Code(), r.p.Token(), req2.Token())
		}
		if req.Token() == req2.Token() {
			t.Fatal("two requests with one Token")
		}
		if v, _ := r.p.Attr(packet.AttrTunnelPassword); string(v) != "\x01tunnelpw" {
			t.Fatalf("native reply Tunnel-Password %q, want it in the clear", v)
		}

		// A reply with a Token nobody waits for.
		stray := append(packet.Packet(nil), r.p...)
		packet.SetToken(stray, req2.Token()+1)
		server.Write(stray)
		synctest.Wait()
		if obs.discarded.Load() != 1 {
			t.Fatalf("discarded %d, want 1", obs.discarded.Load())
		}
		if c.Inflight() != 0 {
			t.Fatalf("inflight %d", c.Inflight())
		}
	})
}

// TestConn11ServerRequests: a CoA-Request the server sends in RADIUS/1.1 form reaches Requests in
// classic form (signed with the connection's secret), and the classic answer goes back in 1.1
// form with the request's Token.
func TestConn11ServerRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		got := make(chan packet.Packet, 1)
		c := NewConn(client, ConnOptions{RADIUS11: true, StatusInterval: time.Hour, DeadAfter: time.Hour,
			Requests: func(p packet.Packet, reply ReplyFunc) {
				got <- append(packet.Packet(nil), p...)
				rb := packet.NewResponse(nil, p, packet.CodeCoAACK)
				resp, _ := rb.Finish([]byte(DefaultSecret), p.Authenticator())
				reply(resp)
			}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx)
		b := packet.New(nil, packet.CodeCoARequest, 0, nil)
		b.AddString(packet.AttrUserName, "alice")
		coa := built(t, b)
		packet.SetToken(coa, 0xabcdef01)
		go server.Write(coa)
		p := <-got
		if !packet.CheckRequestAuthenticator(p, []byte(DefaultSecret)) {
			t.Fatal("classic CoA-Request does not verify")
		}
		ack, err := ReadPacket(bufio.NewReader(server))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Code() != packet.CodeCoAACK || ack.Token() != 0xabcdef01 || ack[1] != 0 || ack.Has(packet.AttrMessageAuthenticator) {
			t.Fatalf("answer %v token %#x reserved %d MA %v", ack.Code(), ack.Token(), ack[1], ack.Has(packet.AttrMessageAuthenticator))
		}
	})
}

// TestTranslatorFull: 256 requests outstanding is the most one connection can carry through the
// classic path; the 257th is refused until a response frees an identifier.
func TestTranslatorFull(t *testing.T) {
	tr := NewTranslator([]byte("s"), time.Minute)
	var last packet.Packet
	for i := range 256 {
		b := packet.New(nil, packet.CodeAccountingRequest, 0, nil)
		p := built(t, b)
		packet.SetToken(p, uint32(i))
		var err error
		if last, err = tr.Request(p); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	b := packet.New(nil, packet.CodeAccountingRequest, 0, nil)
	p := built(t, b)
	if _, err := tr.Request(p); !errors.Is(err, ErrTranslatorFull) {
		t.Fatalf("257th: %v", err)
	}
	rb := packet.NewResponse(nil, last, packet.CodeAccountingResponse)
	resp, _ := rb.Finish([]byte("s"), last.Authenticator())
	r11, err := tr.Response(resp)
	if err != nil || packet.Packet(r11).Token() != 255 {
		t.Fatalf("response: %v", err)
	}
	if _, err := tr.Request(p); err != nil {
		t.Fatalf("after a response: %v", err)
	}
	if _, err := tr.Response(resp); err != nil {
		t.Logf("the id was reused, as expected: %v", err)
	}
}

// built finishes a packet built by hand for a RADIUS/1.1 hop (no secret, nothing signed that
// matters) and returns a copy.
func built(tb testing.TB, b packet.Builder) packet.Packet {
	tb.Helper()
	p, err := b.Finish(nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return append(packet.Packet(nil), p...)
}

// FuzzTranslator feeds arbitrary RADIUS/1.1 requests to a listener connection's Translator and
// answers each with a classic Access-Accept echoing its attributes, hidden ones hidden: it never
// panics, the classic form verifies under the connection's secret, and the response goes back as a
// well-formed RADIUS/1.1 packet carrying the request's Token.
func FuzzTranslator(f *testing.F) {
	b := packet.New(nil, packet.CodeAccessRequest, 0, nil)
	b.Add(packet.AttrUserPassword, []byte("hunter2"))
	b.AddTagged(packet.AttrTunnelPassword, 1, []byte("pw"))
	b.AddVSA(packet.VendorMicrosoft, 17, []byte("0123456789abcdef0123456789abcdef"))
	seed, _ := b.Finish(nil, nil)
	f.Add([]byte(seed))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := packet.Parse(in)
		if err != nil {
			return
		}
		secret := []byte("peer-secret")
		tr := NewTranslator(secret, time.Minute)
		classic, err := tr.Request(p)
		if err != nil {
			return
		}
		if _, err := packet.Parse(classic); err != nil {
			t.Fatalf("classic form malformed: %v", err)
		}
		if packet.CheckRequestMA(classic, secret) == packet.MAInvalid {
			t.Fatal("classic form's Message-Authenticator does not verify")
		}
		rb := packet.NewResponse(nil, classic, packet.CodeAccessAccept)
		for it := classic.Attrs(); ; {
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ != packet.AttrMessageAuthenticator && rb.Len()+2+len(v) < packet.MaxLen {
				rb.Add(typ, v)
			}
		}
		resp, err := rb.Finish(secret, classic.Authenticator())
		if err != nil {
			return
		}
		r11, err := tr.Response(resp)
		if err != nil {
			return
		}
		if _, err := packet.Parse(r11); err != nil {
			t.Fatalf("1.1 response malformed: %v", err)
		}
		if packet.Packet(r11).Token() != p.Token() || r11[1] != 0 || packet.Packet(r11).Has(packet.AttrMessageAuthenticator) {
			t.Fatalf("1.1 response header %x", r11[:packet.HeaderLen])
		}
	})
}

// TestResumptionKeepsRADIUS11: a session that negotiated RADIUS/1.1 resumes only with radius/1.1
// offered again (RFC 9765, "Session Resumption"); resuming it without ALPN fails the handshake
// instead of bidding the connection down to historic RADIUS/TLS.
func TestResumptionKeepsRADIUS11(t *testing.T) {
	lab := pkitest.Must(t)
	scfg := lab.ServerTLS()
	VersionAllow.Apply(scfg)
	BindResumption(scfg)
	cache := tls.NewLRUClientSessionCache(4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Over TCP, not net.Pipe: a TLS 1.3 server writes its session ticket while the client still
	// writes its Finished, which an unbuffered pipe would deadlock.
	dial := func(alpn []string) (tls.ConnectionState, error, error) {
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		deadline := time.Now().Add(10 * time.Second)
		a.SetDeadline(deadline)
		b.SetDeadline(deadline)
		ccfg := lab.ClientTLS()
		ccfg.ServerName = "localhost"
		ccfg.NextProtos = alpn
		ccfg.ClientSessionCache = cache
		ccfg.MinVersion = tls.VersionTLS13
		tc, ts := tls.Client(a, ccfg), tls.Server(b, scfg)
		serr := make(chan error, 1)
		go func() {
			err := ts.Handshake()
			if err == nil {
				_, err = ts.Write([]byte{1}) // the client reads the session ticket before this
			} else {
				b.Close()
			}
			serr <- err
		}()
		cerr := tc.Handshake()
		if cerr == nil {
			var one [1]byte
			_, cerr = tc.Read(one[:])
		} else {
			a.Close()
		}
		return tc.ConnectionState(), cerr, <-serr
	}
	cs, cerr, serr := dial(VersionAllow.NextProtos())
	if cerr != nil || serr != nil || !Is11(cs) || cs.DidResume {
		t.Fatalf("first connection: %v / %v, 1.1 %v, resumed %v", cerr, serr, Is11(cs), cs.DidResume)
	}
	cs, cerr, serr = dial(VersionAllow.NextProtos())
	if cerr != nil || serr != nil || !Is11(cs) || !cs.DidResume {
		t.Fatalf("resumed with radius/1.1: %v / %v, 1.1 %v, resumed %v", cerr, serr, Is11(cs), cs.DidResume)
	}
	_, _, serr = dial(nil)
	if !errors.Is(serr, ErrResumeDowngrade) {
		t.Fatalf("resuming without ALPN: server %v, want ErrResumeDowngrade", serr)
	}
}
