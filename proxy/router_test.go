package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
)

const modelUpSecret = "up-secret"

// modelPeer is an in-process upstream on one net.Pipe: per request it replies, replies twice,
// replies with the wrong secret or the wrong code, or stays silent, as its seeded generator says;
// it may also close the stream or stop reading (the client's writes stall).
type modelPeer struct {
	nc  net.Conn
	mu  sync.Mutex
	rng *rand.Rand
	wg  sync.WaitGroup
}

func (m *modelPeer) intn(n int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rng.IntN(n)
}

func (m *modelPeer) reply(p packet.Packet, code packet.Code, secret string, delay time.Duration) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		time.Sleep(delay)
		if p.Code() == packet.CodeStatusServer {
			code = packet.CodeAccessAccept
		}
		b := packet.NewResponse(nil, p, code)
		if ps, ok := p.Attr(packet.AttrProxyState); ok {
			b.Add(packet.AttrProxyState, ps)
		}
		resp, err := b.Finish([]byte(secret), p.Authenticator())
		if err != nil {
			panic(err)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.nc.SetWriteDeadline(time.Now().Add(time.Second))
		m.nc.Write(resp)
	}()
}

func (m *modelPeer) serve() {
	defer m.wg.Done()
	r := bufio.NewReader(m.nc)
	for {
		p, err := radsec.ReadPacket(r)
		if err != nil {
			return
		}
		d := time.Duration(m.intn(40)) * time.Millisecond
		switch a := m.intn(200); {
		case a < 2:
			m.nc.Close()
			return
		case a < 4:
			return // stops reading
		case a < 140:
			m.reply(p, packet.CodeAccessAccept, modelUpSecret, d)
		case a < 155:
			m.reply(p, packet.CodeAccessAccept, modelUpSecret, d)
			m.reply(p, packet.CodeAccessReject, modelUpSecret, 3*d) // duplicate
		case a < 170:
			m.reply(p, packet.CodeAccessAccept, "wrong", d) // fails verification: discarded
		case a < 180:
			m.reply(p, packet.CodeAccountingResponse, modelUpSecret, d) // wrong code
		case a < 185:
			m.reply(p, packet.CodeAccessAccept, modelUpSecret, 5*time.Second) // late
		default:
			// silent
		}
	}
}

// modelFallback answers every request it gets with Access-Accept, and counts them.
type modelFallback struct{ served atomic.Int64 }

func (*modelFallback) Takes(*Request) bool { return false }

func (f *modelFallback) Serve(_ context.Context, req *Request, _ error) (packet.Packet, error) {
	f.served.Add(1)
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	return b.Finish(req.Client.Secret, req.Packet.Authenticator())
}

// modelPool is a pool whose upstreams are connected to modelPeers by hand (no dialing).
func modelPool(t *testing.T, ctx context.Context, rng *rand.Rand, seed uint64, gen int, conns *sync.WaitGroup, peers *[]*modelPeer) *Pool {
	t.Helper()
	var ups []UpstreamOptions
	for i := range 2 {
		ups = append(ups, UpstreamOptions{Name: fmt.Sprint("up", i), Host: "127.0.0.1", TLS: &tls.Config{}, Secret: Secret(modelUpSecret), Priority: i})
	}
	p, err := NewPool(PoolOptions{Upstreams: ups})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range p.Upstreams() {
		for k := range 1 + rng.IntN(2) {
			client, server := net.Pipe()
			m := &modelPeer{nc: server, rng: rand.New(rand.NewPCG(seed, uint64(100*gen+10*i+k)))}
			m.wg.Add(1)
			go m.serve()
			*peers = append(*peers, m)
			c := radsec.NewConn(client, radsec.ConnOptions{
				Secret: []byte(modelUpSecret), DeadAfter: 800 * time.Millisecond, StatusInterval: 300 * time.Millisecond,
				StallAfter: 200 * time.Millisecond, Quarantine: time.Second, Observer: connObserver{u},
			})
			u.addConn(c)
			conns.Add(1)
			go func() { defer conns.Done(); c.Run(ctx) }()
		}
		u.setState(StateUp, nil)
	}
	return p
}

// TestRouterModel drives the router and two pools (a reload swaps them) over in-process upstreams
// that reply, duplicate, corrupt, delay, close and stall at random, with shutdown racing it all,
// over several hundred seeded schedules. Every request must end exactly once: the router's
// WaitGroup would panic on a second end and Wait would not return on a missing one; no request
// may be answered twice; and (synctest) no goroutine may be left behind.
func TestRouterModel(t *testing.T) {
	schedules := 200
	if testing.Short() {
		schedules = 30
	}
	for seed := range schedules {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runRouterModel(t, uint64(seed)) })
		})
	}
}

func runRouterModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns sync.WaitGroup
	var peers []*modelPeer
	p1 := modelPool(t, ctx, rng, seed, 1, &conns, &peers)
	p2 := modelPool(t, ctx, rng, seed, 2, &conns, &peers)
	fb := new(modelFallback)
	front, err := NewServer(ServerOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats := front.Stats()
	r := NewRouter(RouterOptions{Fallback: fb}, p1, stats)

	client := &Client{Name: "nas", Secret: Secret("nas-secret"), stats: new(NASStats)}
	n := 100 + rng.IntN(300)
	answers := make([]atomic.Int32, n)
	var reqs []*Request
	reloadAt := rng.IntN(n)
	shutdownAt := time.Duration(rng.IntN(3000)) * time.Millisecond
	go func() {
		select {
		case <-time.After(shutdownAt):
		case <-ctx.Done():
		}
		cancel()
	}()
	for i := range n {
		if i == reloadAt {
			r.SetPool(p2)
		}
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		b := packet.New(nil, packet.CodeAccessRequest, uint8(i), make([]byte, packet.AuthLen))
		b.AddMA()
		b.AddString(packet.AttrUserName, fmt.Sprint("user", i))
		pkt, err := b.Finish(client.Secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		req := &Request{Client: client, Packet: pkt, Received: now, Deadline: now.Add(time.Duration(200+rng.IntN(1500)) * time.Millisecond),
			front: front, w: newStreamWriter(client, netip.AddrPort{}, 1, func(resp []byte) error {
				if answers[i].Add(1) != 1 {
					t.Errorf("request %d answered twice", i)
				}
				return nil
			})}
		reqs = append(reqs, req)
		r.ServeRADIUS(req)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := r.Wait(wctx); err != nil {
		t.Fatalf("Router.Wait: %v", err)
	}
	cancel()
	conns.Wait()
	for _, m := range peers {
		m.nc.Close()
		m.wg.Wait()
	}
	answered := 0
	for i := range answers {
		answered += int(answers[i].Load())
	}
	dropped := stats.Dropped[DropUpstreamTimeout].Load() + stats.Dropped[DropMalformed].Load()
	if uint64(answered)+dropped > uint64(n)+stats.Dropped[DropBadReply].Load() || uint64(answered) > uint64(n) {
		t.Fatalf("%d requests: %d answered, %d dropped", n, answered, dropped)
	}
	// Exactly once: every request's answer slot was claimed (by one Reply or one Drop), and no
	// second claim was ever attempted.
	for i, req := range reqs {
		if !req.claimed.Load() {
			t.Fatalf("request %d ended neither answered nor dropped", i)
		}
	}
	if x := stats.ExtraAnswers.Load(); x != 0 {
		t.Fatalf("%d second answers attempted", x)
	}
	if p1.Inflight() != 0 || p2.Inflight() != 0 {
		t.Fatalf("pool in flight after Wait: %d, %d", p1.Inflight(), p2.Inflight())
	}
}

func TestRouterOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		policy NoUpstreamPolicy
		ok     bool
	}{{"", true}, {NoUpstreamReject, true}, {NoUpstreamDrop, true}, {"accept", false}} {
		o := RouterOptions{NoUpstream: tc.policy}
		if err := o.Validate(); (err == nil) != tc.ok {
			t.Errorf("NoUpstream %q: Validate() = %v", tc.policy, err)
		}
	}
}
