package proxy_test

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"mxedge/proxy"
)

// runPool runs a one-upstream pool to host:port with cfg (or with the options given) until the
// test ends, once its first connection settled.
func runPool(t *testing.T, host string, port uint16, cfg *tls.Config, o ...proxy.UpstreamOptions) *proxy.Pool {
	t.Helper()
	if len(o) == 0 {
		o = []proxy.UpstreamOptions{{Name: "edge2", Host: host, Port: port, TLS: cfg, DeadAfter: 500 * time.Millisecond, BackoffMax: time.Second}}
	}
	p, err := proxy.NewPool(proxy.PoolOptions{Upstreams: o})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	p.WaitReady(wctx)
	return p
}

// TestHybridKeyExchange: mxedge's upstream and mxedge's listener negotiate the post-quantum
// hybrid X25519MLKEM768 by Go's default and when both require a hybrid, and both sides report it
// from tls.ConnectionState.CurveID; a side that requires a hybrid refuses a classical-only peer.
func TestHybridKeyExchange(t *testing.T) {
	for _, require := range []bool{false, true} {
		x := startListener(t, proxy.ListenerOptions{})
		cli := x.lab.ClientTLS()
		if require {
			proxy.RequireHybrid(cli)
			srv := x.lab.ServerTLS()
			proxy.RequireHybrid(srv)
			x.ln.SetTLS(srv)
		}
		p := runPool(t, x.addr.Addr().String(), x.addr.Port(), cli)
		st := p.Upstreams()[0].Status()
		if st.State != proxy.StateUp || len(st.TLS) != 1 {
			t.Fatalf("require=%v: upstream %+v", require, st)
		}
		if got := st.TLS[0]; got.CurveID != tls.X25519MLKEM768 || got.Group != "X25519MLKEM768" || !got.Hybrid || got.Version != "TLS 1.3" {
			t.Fatalf("require=%v: upstream negotiated %+v", require, got)
		}
		forward(t, p, "alice") // the listener's handler rejects; the exchange itself must work
		conns := x.ln.Conns()
		if len(conns) != 1 || conns[0].TLS.CurveID != tls.X25519MLKEM768 || conns[0].NAS != "a" || conns[0].TLS.Cipher == "" {
			t.Fatalf("require=%v: listener sees %+v", require, conns)
		}
	}

	t.Run("classical peer refused", func(t *testing.T) {
		x := startListener(t, proxy.ListenerOptions{})
		classic := x.lab.ServerTLS()
		classic.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		x.ln.SetTLS(classic)
		cli := x.lab.ClientTLS()
		proxy.RequireHybrid(cli)
		p := runPool(t, x.addr.Addr().String(), x.addr.Port(), cli)
		if st := p.Upstreams()[0].Status(); st.State == proxy.StateUp || st.LastError == "" {
			t.Fatalf("hybrid-requiring upstream connected to a classical listener: %+v", st)
		}
		// And the other way: a listener requiring a hybrid refuses a classical client.
		srv := x.lab.ServerTLS()
		proxy.RequireHybrid(srv)
		x.ln.SetTLS(srv)
		old := x.lab.ClientTLS()
		old.CurvePreferences = []tls.CurveID{tls.X25519}
		if c, err := x.dial(t, "127.0.0.1", old); err == nil {
			c.tc.Close()
			t.Fatal("a listener requiring a hybrid accepted X25519 alone")
		}
	})
}
