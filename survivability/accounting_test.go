package survivability

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability/spool"
)

// fakeCloud is a Forwarder: it records what reaches it, per session, and answers as told.
type fakeCloud struct {
	mu     sync.Mutex
	got    map[string][]uint32 // Acct-Session-Id -> Acct-Status-Type in arrival order
	answer func(req *proxy.Request, done func(proxy.Result))
}

func (c *fakeCloud) Forward(req *proxy.Request, done func(proxy.Result)) {
	c.answer(req, done)
}

// deliver records req as received by the cloud and returns the cloud's Accounting-Response.
func (c *fakeCloud) deliver(req *proxy.Request) proxy.Result {
	sid, _ := req.Packet.Attr(packet.AttrAcctSessionID)
	st, _ := req.Packet.Attr(packet.AttrAcctStatusType)
	c.mu.Lock()
	c.got[string(sid)] = append(c.got[string(sid)], uint32(st[3]))
	c.mu.Unlock()
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccountingResponse)
	resp, _ := b.Finish(req.Client.Secret, req.Packet.Authenticator())
	return proxy.Result{Response: resp}
}

func newAccountingTest(t *testing.T, cloud *fakeCloud) (*Accounting, *spool.Spool, *proxy.Client) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Path: filepath.Join(t.TempDir(), "spool.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	client := &proxy.Client{Name: "sw1", Prefix: netip.MustParsePrefix("10.0.0.1/32"), Secret: proxy.Secret(secret)}
	a := NewAccounting(AccountingOptions{Spool: sp, Forward: cloud, Health: NewHealth(HealthOptions{}),
		Clients: func(string) *proxy.Client { return client }, Timeout: 200 * time.Millisecond})
	return a, sp, client
}

func acctReq(t testing.TB, client *proxy.Client, session string, status uint32, extra int) *proxy.Request {
	t.Helper()
	b := packet.New(nil, packet.CodeAccountingRequest, byte(status), nil)
	b.AddUint32(packet.AttrAcctStatusType, status)
	b.AddString(packet.AttrAcctSessionID, session)
	for extra > 0 {
		n := min(extra, 253)
		b.Add(packet.AttrClass, make([]byte, n))
		extra -= n + 2
	}
	p, err := b.Finish(client.Secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &proxy.Request{Client: client, Packet: p, Received: now, Deadline: now.Add(200 * time.Millisecond)}
}

// TestAccountingDirectFailureKeepsOrder: a session's Start fails its direct attempt slowly while its
// Interim-Update and Stop arrive; they wait for the Start to be spooled and queue behind it, so the
// cloud gets Start, Interim-Update, Stop, although the direct path works again for the later two.
func TestAccountingDirectFailureKeepsOrder(t *testing.T) {
	cloud := &fakeCloud{got: map[string][]uint32{}}
	var first sync.Once
	cloud.answer = func(req *proxy.Request, done func(proxy.Result)) {
		slow := false
		first.Do(func() { slow = true })
		if slow {
			go func() { time.Sleep(100 * time.Millisecond); done(proxy.Result{Err: errors.New("upstream lost")}) }()
			return
		}
		done(cloud.deliver(req))
	}
	a, sp, client := newAccountingTest(t, cloud)
	var wg sync.WaitGroup
	results := make([]bool, 3)
	for i, status := range []uint32{1, 3, 2} {
		req := acctReq(t, client, "s1", status, 0)
		// One goroutine per request, as the router runs them, started in receipt order.
		ready := make(chan struct{})
		wg.Go(func() {
			close(ready)
			_, spooled, err := a.Account(req)
			if err != nil {
				t.Error(err)
			}
			results[i] = spooled
		})
		<-ready
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if !results[0] || !results[1] || !results[2] {
		t.Fatalf("spooled %v: the Interim-Update and Stop must queue behind the spooled Start", results)
	}
	if len(cloud.got["s1"]) != 0 {
		t.Fatalf("cloud got %v directly while the Start was spooled", cloud.got["s1"])
	}
	n, err := sp.ReplayWith(context.Background(), spool.ReplayOptions{Window: 8, Key: entryKey, Send: a.send})
	if err != nil || n != 3 {
		t.Fatalf("replay = %d, %v", n, err)
	}
	if got := fmt.Sprint(cloud.got["s1"]); got != "[1 3 2]" {
		t.Fatalf("cloud got %s, want Start, Interim-Update, Stop", got)
	}
	if st := a.Stats(); st.Direct != 0 || st.Spooled != 3 || st.Depth != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAccountingForwarderMisbehaves: a Forwarder that answers twice, or never, settles each record
// exactly once, direct or replayed; nothing panics or hangs.
func TestAccountingForwarderMisbehaves(t *testing.T) {
	cloud := &fakeCloud{got: map[string][]uint32{}}
	mode := "twice"
	var mu sync.Mutex
	cloud.answer = func(req *proxy.Request, done func(proxy.Result)) {
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "twice":
			// The answer, then a timeout of the same request (the connection race).
			r := cloud.deliver(req)
			go func() {
				done(r)
				done(proxy.Result{Err: errors.New("late timeout")})
			}()
		case "never":
		}
	}
	a, sp, client := newAccountingTest(t, cloud)
	resp, spooled, err := a.Account(acctReq(t, client, "d", 1, 0))
	if err != nil || spooled || resp == nil {
		t.Fatalf("twice: resp %v spooled %v err %v", resp, spooled, err)
	}
	mu.Lock()
	mode = "never"
	mu.Unlock()
	start := time.Now()
	if _, spooled, err := a.Account(acctReq(t, client, "n", 1, 0)); err != nil || !spooled {
		t.Fatalf("never: spooled %v err %v", spooled, err)
	}
	if d := time.Since(start); d > 200*time.Millisecond+forwardGrace+time.Second {
		t.Fatalf("never answered: waited %v", d)
	}
	// Replay: the never-answering Forwarder times out the record (it stays), twice-answering delivers it.
	n, err := sp.ReplayWith(context.Background(), spool.ReplayOptions{Window: 4, Key: entryKey, Send: a.send})
	if err == nil || n != 0 || sp.Len() < 1 {
		t.Fatalf("replay against a silent forwarder = %d, %v, Len %d", n, err, sp.Len())
	}
	mu.Lock()
	mode = "twice"
	mu.Unlock()
	left := sp.Len()
	n, err = sp.ReplayWith(context.Background(), spool.ReplayOptions{Window: 4, Key: entryKey, Send: a.send})
	if err != nil || n != left || sp.Len() != 0 {
		t.Fatalf("replay with double answers = %d, %v, Len %d", n, err, sp.Len())
	}
}

// TestAccountingOversizedQuarantined: a spooled record that cannot be forwarded within 4096 octets
// is quarantined, not retried, and the session's Stop behind it is delivered.
func TestAccountingOversizedQuarantined(t *testing.T) {
	cloud := &fakeCloud{got: map[string][]uint32{}}
	cloud.answer = func(req *proxy.Request, done func(proxy.Result)) { done(cloud.deliver(req)) }
	a, sp, client := newAccountingTest(t, cloud)
	big := acctReq(t, client, "big", 3, 4040)
	if len(big.Packet) < 4069 {
		t.Fatalf("test record only %d octets", len(big.Packet))
	}
	for _, req := range []*proxy.Request{big, acctReq(t, client, "big", 2, 0)} {
		if _, err := sp.Append(spool.Entry{Client: "sw1", Packet: req.Packet}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := sp.ReplayWith(context.Background(), spool.ReplayOptions{Window: 4, Key: entryKey, Send: a.send})
	if err != nil || n != 1 {
		t.Fatalf("replay = %d, %v", n, err)
	}
	st := a.Stats()
	if st.Quarantined != 1 || st.QuarantineDepth != 1 || st.Depth != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := fmt.Sprint(cloud.got["big"]); got != "[2]" {
		t.Fatalf("cloud got %s, want the Stop", got)
	}
	q, _ := sp.Quarantine(1)
	if len(q) != 1 || !strings.Contains(q[0].Reason, "above 4096") {
		t.Fatalf("quarantine %+v", q)
	}
	t.Logf("quarantined %d-octet record: %s", len(big.Packet), q[0].Reason)
}

// TestAccountingAdmitOrder: the place a record takes at Admit (the reader goroutine, receipt order)
// holds although the requests' own goroutines run Account in the reverse order.
func TestAccountingAdmitOrder(t *testing.T) {
	cloud := &fakeCloud{got: map[string][]uint32{}}
	cloud.answer = func(req *proxy.Request, done func(proxy.Result)) { done(cloud.deliver(req)) }
	a, _, client := newAccountingTest(t, cloud)
	reqs := []*proxy.Request{acctReq(t, client, "s", 1, 0), acctReq(t, client, "s", 3, 0), acctReq(t, client, "s", 2, 0)}
	for _, r := range reqs {
		a.Admit(r)
	}
	var wg sync.WaitGroup
	for i := len(reqs) - 1; i >= 0; i-- {
		wg.Go(func() {
			if resp, spooled, err := a.Account(reqs[i]); err != nil || spooled || resp == nil {
				t.Errorf("record %d: resp %v spooled %v err %v", i, resp, spooled, err)
			}
		})
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if got := fmt.Sprint(cloud.got["s"]); got != "[1 3 2]" {
		t.Fatalf("cloud got %s, want the receipt order [1 3 2]", got)
	}
	if st := a.Stats(); st.Direct != 3 {
		t.Fatalf("stats %+v", st)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.gates) != 0 || len(a.admitted) != 0 {
		t.Fatalf("%d gates, %d admitted left behind", len(a.gates), len(a.admitted))
	}
}
