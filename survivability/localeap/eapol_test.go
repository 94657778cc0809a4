package localeap

import (
	"context"
	"encoding/hex"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// localFallback is the survivability decision engine reduced to what these tests need: the
// cloud is down (Takes every request), EAP goes to the Handler, anything else is rejected.
type localFallback struct {
	h      *Handler
	onEAP  atomic.Pointer[func(n int64)] // called before each EAP request is served, with its sequence number
	served atomic.Int64
}

func (f *localFallback) Takes(*proxy.Request) bool { return true }

func (f *localFallback) Serve(_ context.Context, req *proxy.Request, _ error) (packet.Packet, error) {
	if req.Packet.Code() != packet.CodeAccessRequest || !req.Packet.Has(packet.AttrEAPMessage) {
		b := packet.NewResponse(nil, req.Packet, packet.CodeAccessReject)
		return b.Finish(req.Client.Secret, req.Packet.Authenticator())
	}
	n := f.served.Add(1)
	if fn := f.onEAP.Load(); fn != nil {
		(*fn)(n)
	}
	return f.h.Serve(req), nil
}

// rig is mxedge's front door on 127.0.0.1 in survivability mode with the local EAP-TLS handler.
type rig struct {
	h    *Handler
	fb   *localFallback
	evs  *events
	port int
}

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	before := runtime.NumGoroutine()
	r := &rig{evs: newEvents()}
	o.Events = r.evs.add
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.h, r.fb = h, &localFallback{h: h}
	stats := new(proxy.Stats)
	router := proxy.NewRouter(proxy.RouterOptions{Fallback: r.fb}, nil, stats)
	srv, err := proxy.NewServer(proxy.ServerOptions{AuthAddrs: []string{"127.0.0.1:0"}, AcctAddrs: []string{}, Readers: 1, Stats: stats}, router)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetClients([]proxy.Client{{Name: "nas1", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret),
		Vendor: "generic", RequireMessageAuthenticator: true}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	r.port = int(srv.Addrs(proxy.PortAuth)[0].Port())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Run(ctx) }()
	go func() { defer wg.Done(); h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		router.Wait(context.Background())
		srv.Close()
		waitGoroutines(t, before)
	})
	return r
}

// eapol runs eapol_test with the lab's client certificate name and an anonymous outer identity.
func (r *rig) eapol(t *testing.T, ctx context.Context, l *lab, client string, mod func(*peertest.EapolOptions)) (peertest.EapolResult, error) {
	t.Helper()
	cf := l.clients[client]
	o := peertest.EapolOptions{
		Port: r.port, Secret: nasSecret,
		Identity: cf.issued.Cert.Subject.CommonName, AnonymousIdentity: "anonymous@example.test",
		CACert: l.rootFile, ClientCert: cf.cert, PrivateKey: cf.key,
		CallingStationID: "02:00:00:00:00:01", Timeout: 15 * time.Second, Dir: t.TempDir(),
	}
	if mod != nil {
		mod(&o)
	}
	return peertest.EapolTest(ctx, o)
}

// vlanValue accepts eapol_test's rendering of a Tunnel-Private-Group-ID: text or hex.
func vlanValue(res peertest.EapolResult) string {
	v := res.Get("Tunnel-Private-Group-Id")
	if b, err := hex.DecodeString(v); err == nil && len(b) > 0 {
		return string(b)
	}
	return v
}

func TestEapolTest(t *testing.T) {
	l := testLab(t)
	tls12 := func(o *peertest.EapolOptions) { o.TLS12Only = true }
	tls13 := func(o *peertest.EapolOptions) { o.TLS13Only = true }
	frag200 := func(m func(*peertest.EapolOptions)) func(*peertest.EapolOptions) {
		return func(o *peertest.EapolOptions) { m(o); o.FragmentSize = 200 }
	}
	tests := []struct {
		name, client, version string
		mod                   func(*peertest.EapolOptions)
		serverFrag            int // 0: the default 1000
		minChallenges         int
	}{
		{"tls12/ecdsa", cliECDSA, "TLSv1.2", tls12, 0, 3},
		{"tls13/ecdsa", cliECDSA, "TLSv1.3", tls13, 0, 3},
		{"tls12/rsa2048", cliRSA, "TLSv1.2", tls12, 0, 3},
		{"tls13/rsa2048", cliRSA, "TLSv1.3", tls13, 0, 3},
		// Root + 2 intermediates on both sides; the supplicant's chain only verifies if it sends
		// the intermediates (Verify.Roots holds the root alone).
		{"tls12/chain/frag200", cliChain, "TLSv1.2", frag200(tls12), 0, 8},
		{"tls13/chain/frag200", cliChain, "TLSv1.3", frag200(tls13), 0, 8},
		{"tls12/chain/frag200-both", cliChain, "TLSv1.2", frag200(tls12), 200, 14},
		{"tls13/chain/frag200-both", cliChain, "TLSv1.3", frag200(tls13), 200, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t)
			o.FragmentSize = tt.serverFrag
			r := newRig(t, o)
			res, err := r.eapol(t, t.Context(), l, tt.client, tt.mod)
			if err != nil {
				t.Fatalf("eapol_test: %v", err)
			}
			if !res.Success || !res.MPPEOK {
				t.Fatalf("success %v, MPPE OK %v, events %+v\n%s", res.Success, res.MPPEOK, r.evs.all(), tail(res.Output, 60))
			}
			if res.TLSVersion != tt.version {
				t.Errorf("TLS version %q, want %s", res.TLSVersion, tt.version)
			}
			if n := strings.Count(res.Output, "(Access-Challenge)"); n < tt.minChallenges {
				t.Errorf("%d Access-Challenges, want at least %d", n, tt.minChallenges)
			}
			if v := vlanValue(res); v != "100" {
				t.Errorf("Tunnel-Private-Group-Id %q, want the default VLAN 100", v)
			}
			cn := l.clients[tt.client].issued.Cert.Subject.CommonName
			if u := res.Get("User-Name"); u != cn {
				t.Errorf("User-Name %q, want the certificate identity %q", u, cn)
			}
			ev := r.evs.wait(t, time.Second)
			if !ev.Allowed || ev.Reason != ReasonDefaultVLAN || ev.Identity != cn || ev.MAC != "02:00:00:00:00:01" || ev.NAS != "nas1" {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func TestEapolTestRejected(t *testing.T) {
	l := testLab(t)
	r := newRig(t, l.options(t))
	tests := []struct{ client, reason string }{
		{cliExpired, pki.ReasonExpired},
		{cliOther, pki.ReasonUnknownCA},
		{cliRevoked, pki.ReasonRevoked},
		{cliEKU, pki.ReasonWrongEKU},
	}
	versions := []struct {
		name string
		mod  func(*peertest.EapolOptions)
	}{
		{"tls12", func(o *peertest.EapolOptions) { o.TLS12Only = true }},
		{"tls13", func(o *peertest.EapolOptions) { o.TLS13Only = true }},
	}
	for _, tt := range tests {
		for _, v := range versions {
			t.Run(v.name+"/"+tt.client, func(t *testing.T) {
				res, err := r.eapol(t, t.Context(), l, tt.client, v.mod)
				if err != nil {
					t.Fatalf("eapol_test: %v", err)
				}
				if res.Success {
					t.Fatal("authentication succeeded")
				}
				if !strings.Contains(res.Output, "Access-Reject") {
					t.Errorf("no Access-Reject in eapol_test's output\n%s", tail(res.Output, 30))
				}
				ev := r.evs.wait(t, time.Second)
				if ev.Allowed || ev.Reason != tt.reason {
					t.Errorf("event %+v, want reason %s", ev, tt.reason)
				}
			})
		}
	}
}

func TestEapolTestCache(t *testing.T) {
	l := testLab(t)
	rs := records{{Identity: "alice", MAC: "02:00:00:00:00:01", Method: cache.MethodEAPTLS, Attrs: []cache.Attr{
		{Type: packet.AttrTunnelType, Value: []byte{0, 0, 13}},
		{Type: packet.AttrTunnelMediumType, Value: []byte{0, 0, 6}},
		{Type: packet.AttrTunnelPrivateGroupID, Value: []byte("300")},
	}}}
	tests := []struct {
		name     string
		client   string
		failShut bool
		success  bool
		vlan     string
		reason   string
	}{
		{"hit", cliECDSA, false, true, "300", ReasonCacheHit},
		{"miss", cliRSA, false, true, "100", ReasonDefaultVLAN},
		{"miss-fail-closed", cliRSA, true, false, "", ReasonFailClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := l.options(t)
			o.Authorizer = authorizer(t, rs, tt.failShut)
			r := newRig(t, o)
			res, err := r.eapol(t, t.Context(), l, tt.client, func(o *peertest.EapolOptions) { o.TLS13 = true })
			if err != nil {
				t.Fatalf("eapol_test: %v", err)
			}
			if res.Success != tt.success {
				t.Fatalf("success %v, want %v\n%s", res.Success, tt.success, tail(res.Output, 30))
			}
			if tt.success {
				if !res.MPPEOK {
					t.Error("MPPE keys not OK")
				}
				if v := vlanValue(res); v != tt.vlan {
					t.Errorf("Tunnel-Private-Group-Id %q, want %q", v, tt.vlan)
				}
			}
			if ev := r.evs.wait(t, time.Second); ev.Reason != tt.reason || ev.VLAN != tt.vlan {
				t.Errorf("event %+v, want %s %q", ev, tt.reason, tt.vlan)
			}
		})
	}
}

// TestEapolTestAbandoned kills eapol_test in the middle of the TLS handshake: the conversation
// expires with a timeout event and every goroutine is gone (newRig's cleanup checks the count).
func TestEapolTestAbandoned(t *testing.T) {
	l := testLab(t)
	o := l.options(t)
	o.ConversationTimeout = 2 * time.Second
	r := newRig(t, o)
	ctx, kill := context.WithCancel(t.Context())
	defer kill()
	// Identity, ClientHello, then ACKs of the server flight in 200-byte fragments: stop at the
	// fourth, after the TLS goroutine has started.
	stop := func(n int64) {
		if n == 4 {
			kill()
		}
	}
	// One complete authentication first, so that every long-lived goroutine of the rig runs.
	if res, err := r.eapol(t, t.Context(), l, cliECDSA, nil); err != nil || !res.Success {
		t.Fatalf("warm-up: %v %v", res.Success, err)
	}
	r.evs.wait(t, time.Second)
	time.Sleep(100 * time.Millisecond)
	r.fb.served.Store(0)
	r.fb.onEAP.Store(&stop)
	baseline := runtime.NumGoroutine()
	_, err := r.eapol(t, ctx, l, cliChain, func(o *peertest.EapolOptions) { o.TLS13 = true; o.FragmentSize = 200 })
	if err == nil {
		t.Fatal("eapol_test was not killed")
	}
	if n := r.h.Stats().Conversations; n != 1 {
		t.Fatalf("%d conversations in progress, want the abandoned one", n)
	}
	if !handshakeRunning() {
		t.Fatal("no TLS handshake goroutine in the abandoned conversation: the test stops too early")
	}
	ev := r.evs.wait(t, 5*time.Second)
	if ev.Allowed || ev.Reason != ReasonTimeout || ev.MAC != "02:00:00:00:00:01" {
		t.Errorf("event %+v, want timeout", ev)
	}
	if st := r.h.Stats(); st.Conversations != 0 || st.Expired != 1 {
		t.Errorf("stats %+v", st)
	}
	waitGoroutines(t, baseline)
}

// handshakeRunning reports whether an eaptls handshake goroutine exists.
func handshakeRunning() bool {
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return strings.Contains(b.String(), "survivability/eaptls.(*Server).handshake")
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
