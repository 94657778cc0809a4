package eaptls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"runtime"
	"testing"
	"time"
)

// wire is one EAP packet as exchanged in a conversation.
type wire struct {
	fromServer bool
	b          []byte
}

type conversation struct {
	srv            *Server
	client         *Client
	wires          []wire
	state          State
	srvErr, cliErr error
}

// converse runs a whole conversation in process: identity, Start, handshake,
// Success or Failure.
func converse(tb testing.TB, scfg *ServerConfig, ccfg *ClientConfig) *conversation {
	tb.Helper()
	s := NewServer(scfg)
	c := NewClient(ccfg)
	tb.Cleanup(s.Close)
	tb.Cleanup(c.Close)
	cv := &conversation{srv: s, client: c}
	resp := c.Identity(42)
	cv.wires = append(cv.wires, wire{false, resp})
	req, err := s.Start(resp)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	for range 2000 {
		cv.wires = append(cv.wires, wire{true, req})
		resp, done, err := c.Step(req)
		if done {
			cv.cliErr = err
			if cv.state == Continue {
				// The client gave up first; the server notices by Close.
				cv.state = Failed
				s.Close()
			}
			return cv
		}
		cv.wires = append(cv.wires, wire{false, resp})
		var st State
		req, st, err = s.Step(resp)
		cv.state, cv.srvErr = st, err
		if st != Continue {
			cv.wires = append(cv.wires, wire{true, req})
			_, done, cerr := c.Step(req)
			if !done {
				tb.Fatalf("client not done after server %v", st)
			}
			cv.cliErr = cerr
			return cv
		}
	}
	tb.Fatal("conversation did not end")
	return nil
}

func serverConfig(p *testPKI) *ServerConfig {
	return &ServerConfig{
		Certificates: []tls.Certificate{p.serverEC},
		VerifyPeer:   verifyAgainst(p.root),
	}
}

func clientConfig(p *testPKI, cert tls.Certificate) *ClientConfig {
	return &ClientConfig{
		Identity:     "anonymous@example.org",
		Certificates: []tls.Certificate{cert},
		RootCAs:      p.root.pool(),
	}
}

func TestHandshake(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name      string
		version   uint16
		server    tls.Certificate
		client    tls.Certificate
		frag      int
		minFrags  int // EAP-TLS requests carrying data, at least
		serverSNI string
	}{
		{name: "tls12/ecdsa", version: tls.VersionTLS12, server: p.serverEC, client: p.clientEC},
		{name: "tls13/ecdsa", version: tls.VersionTLS13, server: p.serverEC, client: p.clientEC},
		{name: "tls12/rsa", version: tls.VersionTLS12, server: p.serverEC, client: p.clientRSA},
		{name: "tls13/rsa", version: tls.VersionTLS13, server: p.serverEC, client: p.clientRSA, serverSNI: "radius.example.org"},
		{name: "tls12/deep-chain/frag200", version: tls.VersionTLS12, server: p.serverDeep, client: p.clientRSADeep, frag: 200, minFrags: 10},
		{name: "tls13/deep-chain/frag200", version: tls.VersionTLS13, server: p.serverDeep, client: p.clientDeep, frag: 200, minFrags: 10},
		{name: "tls13/deep-chain/frag64", version: tls.VersionTLS13, server: p.serverDeep, client: p.clientRSADeep, frag: 64, minFrags: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scfg := serverConfig(p)
			scfg.Certificates = []tls.Certificate{tt.server}
			scfg.FragmentSize = tt.frag
			scfg.MaxVersion = tt.version
			ccfg := clientConfig(p, tt.client)
			ccfg.FragmentSize = tt.frag
			ccfg.MinVersion = tt.version
			ccfg.ServerName = tt.serverSNI
			cv := converse(t, scfg, ccfg)
			if cv.state != Succeeded || cv.srvErr != nil || cv.cliErr != nil {
				t.Fatalf("state %v, server err %v, client err %v", cv.state, cv.srvErr, cv.cliErr)
			}
			sr, cr := cv.srv.Result(), cv.client.Result()
			if sr == nil || cr == nil {
				t.Fatal("missing result")
			}
			if sr.Version != tt.version || cr.Version != tt.version {
				t.Errorf("version server %x client %x, want %x", sr.Version, cr.Version, tt.version)
			}
			if sr.MSK != cr.MSK || sr.EMSK != cr.EMSK {
				t.Error("MSK/EMSK differ between server and client")
			}
			if sr.MSK == ([64]byte{}) || sr.MSK == sr.EMSK {
				t.Error("MSK is zero or equals EMSK")
			}
			if len(sr.SessionID) != 65 || !bytes.Equal(sr.SessionID, cr.SessionID) || sr.SessionID[0] != 13 {
				t.Errorf("session id server %x client %x", sr.SessionID, cr.SessionID)
			}
			if got := sr.PeerCertificates[0].Subject.CommonName; got != tt.client.Leaf.Subject.CommonName {
				t.Errorf("peer certificate %q", got)
			}
			if len(sr.PeerCertificates) != len(tt.client.Certificate) {
				t.Errorf("server saw %d client certs, want %d", len(sr.PeerCertificates), len(tt.client.Certificate))
			}
			if len(cr.PeerCertificates) != len(tt.server.Certificate) {
				t.Errorf("client saw %d server certs, want full chain %d", len(cr.PeerCertificates), len(tt.server.Certificate))
			}
			if sr.OuterIdentity != "anonymous@example.org" || cv.srv.OuterIdentity() != sr.OuterIdentity {
				t.Errorf("outer identity %q", sr.OuterIdentity)
			}
			checkFraming(t, cv.wires, orDefault(tt.frag, DefaultFragmentSize), tt.version, tt.minFrags)
		})
	}
}

// checkFraming asserts the RFC 5216 / RFC 9190 rules wpa_supplicant is strict
// about, on the recorded packets.
func checkFraming(t *testing.T, wires []wire, frag int, version uint16, minFrags int) {
	t.Helper()
	var dataReqs int
	inMsg := map[bool]bool{} // direction → in a fragmented message
	var lastID uint8
	for i, w := range wires {
		p, err := ParsePacket(w.b)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if i > 0 {
			if w.fromServer && p.Code == CodeRequest && p.Identifier != lastID+1 {
				t.Errorf("packet %d: request identifier %d after %d", i, p.Identifier, lastID)
			}
			if !w.fromServer && p.Identifier != lastID {
				t.Errorf("packet %d: response identifier %d, request was %d", i, p.Identifier, lastID)
			}
			if p.Code == CodeSuccess && p.Identifier != lastID {
				t.Errorf("success identifier %d, last response %d", p.Identifier, lastID)
			}
		}
		lastID = p.Identifier
		if p.Type != TypeTLS {
			continue
		}
		m, err := ParseMessage(p.Data)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if (m.Flags&FlagStart != 0) != (i == 1) {
			t.Errorf("packet %d: S flag %v (only the Start may carry it)", i, m.Flags&FlagStart != 0)
		}
		if i == 1 && len(p.Data) != 1 {
			t.Errorf("start carries data: % x", p.Data)
		}
		if len(m.Data) > frag {
			t.Errorf("packet %d: %d bytes of tls data, fragment size %d", i, len(m.Data), frag)
		}
		more := m.Flags&FlagMore != 0
		first := !inMsg[w.fromServer]
		if m.Flags&FlagLength != 0 && !(first && more) {
			t.Errorf("packet %d: L flag on a fragment that is not the first of a fragmented message", i)
		}
		if first && more && m.Flags&FlagLength == 0 {
			t.Errorf("packet %d: first fragment without L", i)
		}
		if len(m.Data) > 0 {
			inMsg[w.fromServer] = more
			if w.fromServer {
				dataReqs++
			}
		}
	}
	if dataReqs < minFrags {
		t.Errorf("%d server data fragments, want at least %d", dataReqs, minFrags)
	}
	// The packet before Success is the peer's ACK; the one before that is
	// the server's last flight: for TLS 1.3 the 0x00 commitment (RFC 9190
	// §2.1.1), one application data record.
	n := len(wires)
	last := wires[n-1]
	if p, _ := ParsePacket(last.b); p.Code != CodeSuccess {
		t.Fatalf("last packet is %v", p.Code)
	}
	ack, _ := ParsePacket(wires[n-2].b)
	if m, _ := ParseMessage(ack.Data); !m.IsACK() {
		t.Error("packet before success is not an ack")
	}
	if version == tls.VersionTLS13 {
		fin, _ := ParsePacket(wires[n-3].b)
		m, _ := ParseMessage(fin.Data)
		// One record: 5-byte header, 1 byte data, 1 byte inner type, 16 byte tag.
		if len(m.Data) != 23 || m.Data[0] != 23 {
			t.Errorf("commitment message: % x", m.Data)
		}
	}
}

func TestServerNak(t *testing.T) {
	p := loadPKI(t)
	tests := []struct {
		name  string
		typ   Type
		data  []byte
		types []Type
	}{
		{name: "peap", typ: TypeNak, data: []byte{25}, types: []Type{25}},
		{name: "ttls+peap", typ: TypeNak, data: []byte{21, 25}, types: []Type{21, 25}},
		{name: "no alternative", typ: TypeNak, data: []byte{0}, types: []Type{}},
		{name: "expanded", typ: TypeExpanded, data: []byte{0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(serverConfig(p))
			defer s.Close()
			req, err := s.Start(NewClient(clientConfig(p, p.clientEC)).Identity(1))
			if err != nil {
				t.Fatal(err)
			}
			rp, _ := ParsePacket(req)
			nak := Packet{Code: CodeResponse, Identifier: rp.Identifier, Type: tt.typ, Data: tt.data}.mustMarshal()
			out, st, err := s.Step(nak)
			if st != Failed || !errors.Is(err, ErrNak) {
				t.Fatalf("state %v err %v", st, err)
			}
			if fp, _ := ParsePacket(out); fp.Code != CodeFailure || fp.Identifier != rp.Identifier {
				t.Errorf("answer % x, want failure with id %d", out, rp.Identifier)
			}
			var ne *NakError
			if !errors.As(err, &ne) {
				t.Fatalf("not a NakError: %T", err)
			}
			if tt.types != nil && !equalTypes(ne.Types, tt.types) {
				t.Errorf("types %v, want %v", ne.Types, tt.types)
			}
		})
	}
}

func equalTypes(a, b []Type) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestClientNaksOtherMethods: our peer answers a PEAP request with a Nak
// proposing EAP-TLS (RFC 3748 §5.3.1).
func TestClientNaksOtherMethods(t *testing.T) {
	p := loadPKI(t)
	c := NewClient(clientConfig(p, p.clientEC))
	defer c.Close()
	req := Packet{Code: CodeRequest, Identifier: 9, Type: 25, Data: []byte{0x20}}.mustMarshal()
	resp, done, err := c.Step(req)
	if done || err != nil {
		t.Fatal(done, err)
	}
	rp, _ := ParsePacket(resp)
	if rp.Type != TypeNak || !bytes.Equal(rp.Data, []byte{13}) || rp.Identifier != 9 {
		t.Errorf("response % x", resp)
	}
}

func TestPeerCertificateRejected(t *testing.T) {
	p := loadPKI(t)
	policyErr := errors.New("policy says no")
	tests := []struct {
		name    string
		version uint16
		client  []tls.Certificate
		verify  func([]*x509.Certificate) error
		wantErr error
	}{
		{name: "tls12/other ca", version: tls.VersionTLS12, client: []tls.Certificate{p.clientOther}, wantErr: x509.UnknownAuthorityError{}},
		{name: "tls13/other ca", version: tls.VersionTLS13, client: []tls.Certificate{p.clientOther}, wantErr: x509.UnknownAuthorityError{}},
		{name: "tls13/policy", version: tls.VersionTLS13, client: []tls.Certificate{p.clientEC},
			verify: func([]*x509.Certificate) error { return policyErr }, wantErr: policyErr},
		{name: "tls12/no cert", version: tls.VersionTLS12},
		{name: "tls13/no cert", version: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scfg := serverConfig(p)
			scfg.MaxVersion = tt.version
			if tt.verify != nil {
				scfg.VerifyPeer = tt.verify
			}
			ccfg := clientConfig(p, p.clientEC)
			ccfg.Certificates = tt.client
			cv := converse(t, scfg, ccfg)
			if cv.state != Failed || !errors.Is(cv.srvErr, ErrPeerCertificate) {
				t.Fatalf("state %v err %v", cv.state, cv.srvErr)
			}
			if _, ok := tt.wantErr.(x509.UnknownAuthorityError); ok {
				if _, ok := errors.AsType[x509.UnknownAuthorityError](cv.srvErr); !ok {
					t.Errorf("verifier error not wrapped: %v", cv.srvErr)
				}
			} else if tt.wantErr != nil && !errors.Is(cv.srvErr, tt.wantErr) {
				t.Errorf("verifier error not wrapped: %v", cv.srvErr)
			}
			if !errors.Is(cv.cliErr, ErrFailure) {
				t.Errorf("client error %v, want ErrFailure", cv.cliErr)
			}
			if cv.srv.Result() != nil {
				t.Error("result after failure")
			}
		})
	}
}

// TestClientRejectsServer: the client does not trust the server; it stops and
// the server conversation is closed (RFC 5216 §2.1.3 would have the peer send
// an alert; our client just stops).
func TestClientRejectsServer(t *testing.T) {
	p := loadPKI(t)
	ccfg := clientConfig(p, p.clientEC)
	ccfg.RootCAs = p.otherRoot.pool()
	cv := converse(t, serverConfig(p), ccfg)
	if !errors.Is(cv.cliErr, ErrPeerCertificate) {
		t.Fatalf("client err %v", cv.cliErr)
	}
}

func TestVersionBounds(t *testing.T) {
	p := loadPKI(t)
	scfg := serverConfig(p)
	scfg.MinVersion = tls.VersionTLS13
	ccfg := clientConfig(p, p.clientEC)
	ccfg.MaxVersion = tls.VersionTLS12
	cv := converse(t, scfg, ccfg)
	if cv.state != Failed || !errors.Is(cv.srvErr, ErrHandshake) {
		t.Fatalf("state %v err %v", cv.state, cv.srvErr)
	}
}

func TestHotReloadGetCertificate(t *testing.T) {
	p := loadPKI(t)
	scfg := serverConfig(p)
	scfg.Certificates = nil
	calls := 0
	scfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		calls++
		return &p.serverDeep, nil
	}
	cv := converse(t, scfg, clientConfig(p, p.clientEC))
	if cv.state != Succeeded || calls != 1 {
		t.Fatalf("state %v err %v calls %d", cv.state, cv.srvErr, calls)
	}
	if n := len(cv.client.Result().PeerCertificates); n != 3 {
		t.Errorf("client saw %d certificates", n)
	}
}

func TestMPPEKeys(t *testing.T) {
	var msk [64]byte
	for i := range msk {
		msk[i] = byte(i)
	}
	recv, send := MPPEKeys(msk)
	if len(recv) != 32 || len(send) != 32 || recv[0] != 0 || recv[31] != 31 || send[0] != 32 || send[31] != 63 {
		t.Fatalf("recv % x send % x", recv, send)
	}
	recv[0] = 0xff
	if msk[0] != 0 {
		t.Error("MPPEKeys aliases the MSK")
	}
}

func TestServerConfigValidate(t *testing.T) {
	p := loadPKI(t)
	ok := func() ServerConfig { return *serverConfig(p) }
	tests := []struct {
		name string
		mod  func(*ServerConfig)
		ok   bool
	}{
		{name: "defaults", mod: func(*ServerConfig) {}, ok: true},
		{name: "get certificate only", mod: func(c *ServerConfig) {
			c.Certificates = nil
			c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
		}, ok: true},
		{name: "no certificate", mod: func(c *ServerConfig) { c.Certificates = nil }},
		{name: "certificate without key", mod: func(c *ServerConfig) { c.Certificates = []tls.Certificate{{Certificate: [][]byte{{1}}}} }},
		{name: "no verifier", mod: func(c *ServerConfig) { c.VerifyPeer = nil }},
		{name: "tls 1.1", mod: func(c *ServerConfig) { c.MinVersion = tls.VersionTLS11 }},
		{name: "min above max", mod: func(c *ServerConfig) { c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS12 }},
		{name: "fragment too small", mod: func(c *ServerConfig) { c.FragmentSize = 10 }},
		{name: "fragment too big", mod: func(c *ServerConfig) { c.FragmentSize = MaxFragmentSize + 1 }},
		{name: "negative timeout", mod: func(c *ServerConfig) { c.HandshakeTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(&c)
			err := c.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate: %v", err)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("%v does not wrap ErrConfig", err)
			}
			if !tt.ok {
				if _, err := NewServer(&c).Start(NewClient(nil).Identity(1)); !errors.Is(err, ErrConfig) {
					t.Errorf("Start with bad config: %v", err)
				}
			}
		})
	}
}

// goroutineBaseline returns a check that fails the test unless the number of
// goroutines comes back to what it is now.
func goroutineBaseline(tb testing.TB) func() {
	tb.Helper()
	base := runtime.NumGoroutine()
	return func() {
		tb.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				tb.Fatalf("%d goroutines, baseline %d\n%s", n, base, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
