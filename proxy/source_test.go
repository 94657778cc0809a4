package proxy_test

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy"
	"mxedge/proxy/radsectest"
)

// sourceWatch starts a responder that records the source address of every TLS handshake.
func sourceWatch(t *testing.T, lab *pkitest.Lab) (*radsectest.Responder, func() []netip.Addr) {
	t.Helper()
	var mu sync.Mutex
	var srcs []netip.Addr
	cfg := lab.ServerTLS()
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		ap, _ := netip.ParseAddrPort(h.Conn.RemoteAddr().String())
		mu.Lock()
		srcs = append(srcs, ap.Addr())
		mu.Unlock()
		return nil, nil
	}
	r, err := radsectest.Start(cfg, "radsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, func() []netip.Addr { mu.Lock(); defer mu.Unlock(); return append([]netip.Addr(nil), srcs...) }
}

// TestUpstreamSourceAndDevice: connections leave from the configured source address and are bound
// to the configured device (loopback here; edge/netns_source_test.go shows the routing effect of
// a device in a network namespace); a device that does not exist fails the dial naming it.
func TestUpstreamSourceAndDevice(t *testing.T) {
	lab := pkitest.Must(t)
	r, sources := sourceWatch(t, lab)
	pool := func(mod func(*proxy.UpstreamOptions)) *proxy.Upstream {
		o := proxy.UpstreamOptions{Name: "up", Host: "127.0.0.1", Port: r.Addr().Port(), TLS: lab.ClientTLS(),
			DeadAfter: 500 * time.Millisecond, DialTimeout: time.Second}
		mod(&o)
		return runPool(t, "", 0, nil, o).Upstreams()[0]
	}
	u := pool(func(o *proxy.UpstreamOptions) { o.Source = netip.MustParseAddr("127.0.0.2"); o.BindDevice = "lo" })
	if st := u.Status(); st.State != proxy.StateUp {
		t.Fatalf("source 127.0.0.2 on lo: %+v", st)
	}
	if got := sources(); len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("responder saw sources %v, want 127.0.0.2", got)
	}
	u = pool(func(o *proxy.UpstreamOptions) { o.BindDevice = "nosuchdev0" })
	if st := u.Status(); st.State == proxy.StateUp || !strings.Contains(st.LastError, `bind to device "nosuchdev0"`) {
		t.Fatalf("missing device: %+v", st)
	}
	u = pool(func(o *proxy.UpstreamOptions) { o.Source = netip.MustParseAddr("::1") })
	if st := u.Status(); st.State == proxy.StateUp || !strings.Contains(st.LastError, "source ::1 cannot reach 127.0.0.1") {
		t.Fatalf("family mismatch: %+v", st)
	}
	for _, bad := range []proxy.UpstreamOptions{
		{Name: "x", Host: "h", TLS: lab.ClientTLS(), Source: netip.IPv4Unspecified()},
		{Name: "x", Host: "h", TLS: lab.ClientTLS(), BindDevice: "eth0/../x"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", bad)
		}
	}
}
