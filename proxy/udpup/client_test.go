package udpup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

const secret = "national-secret"

// startNational runs FreeRADIUS as a national roaming server over RADIUS/UDP.
func startNational(t *testing.T) (*peertest.FreeRADIUS, netip.AddrPort) {
	t.Helper()
	certs := peertest.NewCerts(t)
	port := peertest.FreePort(t)
	addr := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port))
	f := peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		UDPAuthAddr: addr.String(),
		UDPClients:  []peertest.Client{{Addr: "127.0.0.1", Secret: secret}},
		ServerCert:  certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: []peertest.User{
			// FreeRADIUS 3.2.1 adds Message-Authenticator to a reply only when told to.
			{Name: "visitor@example.org", Password: "pw", Reply: []string{`Message-Authenticator = 0x00`, `Reply-Message = "hello visitor"`}},
			{Name: "nomac@example.org", Password: "pw", Reply: []string{`Reply-Message = "no MA"`}},
		},
	})
	return f, addr
}

func accessRequest(t testing.TB, user string) BuildFunc {
	return func(dst []byte, id uint8) (packet.Packet, error) {
		var auth [packet.AuthLen]byte
		rand.Read(auth[:])
		b := packet.New(dst, packet.CodeAccessRequest, id, auth[:])
		b.AddMA()
		b.AddString(packet.AttrUserName, user)
		b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(nil, []byte("pw"), []byte(secret), auth[:]))
		return b.Finish([]byte(secret), nil)
	}
}

type result struct {
	p   packet.Packet
	err error
}

func exchange(t *testing.T, c *Client, user string, budget time.Duration) result {
	t.Helper()
	ch := make(chan result, 1)
	if _, err := c.Exchange(accessRequest(t, user), time.Now().Add(budget), func(p packet.Packet, err error) { ch <- result{p, err} }); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return <-ch
}

func waitUp(t *testing.T, c *Client) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !c.Up(); {
		if time.Now().After(deadline) {
			t.Fatal("server never answered Status-Server")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type countingObserver struct {
	nopObserver
	discarded atomic.Int64
	down      atomic.Int64
	mu        sync.Mutex
	last      error
}

func (o *countingObserver) Discarded(err error) {
	o.discarded.Add(1)
	o.mu.Lock()
	o.last = err
	o.mu.Unlock()
}
func (o *countingObserver) Down(error) { o.down.Add(1) }

func run(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// TestFreeRADIUSHomeServer: Status-Server brings the server up, an Access-Request is answered and
// verified, and a reply without Message-Authenticator is discarded unless allowed (BlastRADIUS).
func TestFreeRADIUSHomeServer(t *testing.T) {
	base := runtime.NumGoroutine()
	_, addr := startNational(t)
	t.Run("accept", func(t *testing.T) {
		obs := &countingObserver{}
		c := run(t, Options{Server: addr, Secret: []byte(secret), Observer: obs})
		waitUp(t, c)
		r := exchange(t, c, "visitor@example.org", 3*time.Second)
		if r.err != nil || r.p.Code() != packet.CodeAccessAccept {
			t.Fatalf("got %v, %v", r.p, r.err)
		}
		if msg, _ := r.p.Attr(packet.AttrReplyMessage); string(msg) != "hello visitor" {
			t.Errorf("Reply-Message %q", msg)
		}
	})
	t.Run("reply without Message-Authenticator discarded", func(t *testing.T) {
		obs := &countingObserver{}
		c := run(t, Options{Server: addr, Secret: []byte(secret), Observer: obs})
		waitUp(t, c)
		r := exchange(t, c, "nomac@example.org", 1500*time.Millisecond)
		if !errors.Is(r.err, ErrBadReply) {
			t.Fatalf("err = %v, want ErrBadReply", r.err)
		}
		if obs.discarded.Load() == 0 {
			t.Fatal("nothing counted as discarded")
		}
	})
	t.Run("allowed without Message-Authenticator", func(t *testing.T) {
		c := run(t, Options{Server: addr, Secret: []byte(secret), AllowMissingMA: true})
		waitUp(t, c)
		if r := exchange(t, c, "nomac@example.org", 3*time.Second); r.err != nil || r.p.Code() != packet.CodeAccessAccept {
			t.Fatalf("got %v, %v", r.p, r.err)
		}
	})
	t.Run("wrong secret never verifies", func(t *testing.T) {
		c := run(t, Options{Server: addr, Secret: []byte("wrong"), DeadAfter: 500 * time.Millisecond})
		time.Sleep(800 * time.Millisecond)
		if c.Up() {
			t.Fatal("up with a wrong secret")
		}
		if _, err := c.Exchange(accessRequest(t, "x"), time.Now().Add(time.Second), func(packet.Packet, error) {}); !errors.Is(err, ErrDead) {
			t.Fatalf("err = %v", err)
		}
	})
	checkGoroutines(t, base)
}

// TestMoreThan256Outstanding pauses FreeRADIUS, sends 1024 requests (four source ports, 256
// identifiers each), resumes it, and checks that every request got its own Access-Accept.
func TestMoreThan256Outstanding(t *testing.T) {
	f, addr := startNational(t)
	// The kernel drops what overflows the paused server's receive buffer: retransmissions
	// (same identifier and authenticator) recover those.
	c := run(t, Options{Server: addr, Secret: []byte(secret), DeadAfter: 20 * time.Second, RetransmitAfter: time.Second, MaxTransmissions: 10})
	waitUp(t, c)
	if err := f.Pause(); err != nil {
		t.Fatal(err)
	}
	// Fill every identifier of every source port (one may be a Status-Server probe's): the
	// next request is refused with ErrBusy, never queued without bound.
	res := make(chan result, 4*256)
	n := 0
	for ; n <= 4*256; n++ {
		_, err := c.Exchange(accessRequest(t, "visitor@example.org"), time.Now().Add(30*time.Second), func(p packet.Packet, err error) { res <- result{p, err} })
		if errors.Is(err, ErrBusy) {
			break
		}
		if err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
	}
	if n < 4*256-1 || c.Inflight() != n {
		t.Fatalf("%d accepted before ErrBusy, %d in flight; want 1023 or 1024", n, c.Inflight())
	}
	time.Sleep(200 * time.Millisecond)
	if err := f.Resume(); err != nil {
		t.Fatal(err)
	}
	accepted := 0
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case r := <-res:
			if r.err != nil || r.p.Code() != packet.CodeAccessAccept {
				t.Fatalf("got %v, %v", r.p, r.err)
			}
			accepted++
		case <-timeout:
			t.Fatalf("%d of %d answered", accepted, n)
		}
	}
	t.Logf("%d requests outstanding at once, %d accepted", n, accepted)
}

// TestRetransmitSameIDAndAuthenticator: a server that ignores the first transmission gets the
// same packet again (RFC 5080 §2.2.1), also when the NAS retransmits (Retransmit).
func TestRetransmitSameIDAndAuthenticator(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	seen := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := packet.Packet(append([]byte(nil), buf[:n]...))
			if p.Code() == packet.CodeStatusServer {
				b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
				r, _ := b.Finish([]byte(secret), p.Authenticator())
				srv.WriteToUDPAddrPort(r, from)
				continue
			}
			seen <- p
		}
	}()
	c := run(t, Options{Server: addr, Secret: []byte(secret), RetransmitAfter: 300 * time.Millisecond, DeadAfter: 10 * time.Second, StatusInterval: 5 * time.Second})
	waitUp(t, c)
	done := make(chan error, 1)
	sent, err := c.Exchange(accessRequest(t, "u@example.org"), time.Now().Add(2*time.Second), func(_ packet.Packet, err error) { done <- err })
	if err != nil {
		t.Fatal(err)
	}
	first := <-seen
	time.Sleep(200 * time.Millisecond)
	c.Retransmit(sent) // the NAS retransmitted: mapped at once
	second := <-seen
	third := <-seen // the client's own timer
	for i, p := range [][]byte{second, third} {
		if string(p) != string(first) {
			t.Fatalf("transmission %d differs from the first", i+2)
		}
	}
	select {
	case p := <-seen:
		t.Fatalf("a fourth transmission (MaxTransmissions 3): id %d", packet.Packet(p).ID())
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	}
}

// TestDownFailsRequestsOver: a server that stops answering is declared down after DeadAfter and
// every waiting request gets ErrDead (the pool re-sends it elsewhere).
func TestDownFailsRequestsOver(t *testing.T) {
	f, addr := startNational(t)
	obs := &countingObserver{}
	c := run(t, Options{Server: addr, Secret: []byte(secret), DeadAfter: 600 * time.Millisecond, StatusInterval: 200 * time.Millisecond, Observer: obs})
	waitUp(t, c)
	if err := f.Pause(); err != nil {
		t.Fatal(err)
	}
	defer f.Resume()
	start := time.Now()
	r := exchange(t, c, "visitor@example.org", 5*time.Second)
	if !errors.Is(r.err, ErrDead) {
		t.Fatalf("err = %v, want ErrDead", r.err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("down after %v", d)
	}
	if c.Up() || obs.down.Load() != 1 {
		t.Fatalf("up=%v downs=%d", c.Up(), obs.down.Load())
	}
	f.Resume()
	waitUp(t, c)
	if r := exchange(t, c, "visitor@example.org", 3*time.Second); r.err != nil {
		t.Fatalf("after resume: %v", r.err)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Server: netip.MustParseAddrPort("192.0.2.1:1812"), Secret: []byte("s")}
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"no server", func(o *Options) { o.Server = netip.AddrPort{} }},
		{"no secret", func(o *Options) { o.Secret = nil }},
		{"too many ports", func(o *Options) { o.SourcePorts = 65 }},
		{"family", func(o *Options) { o.Source = netip.MustParseAddr("::1") }},
		{"transmissions", func(o *Options) { o.MaxTransmissions = 11 }},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if err := o.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > base+2; {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, baseline %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
