package mgmt_test

import (
	"context"
	"testing"

	"mxedge/edge/mgmt"
	"mxedge/edge/mgmt/mgmttest"
)

// BenchmarkSyncOnceUnchanged is the steady state: every 30 minutes, config and clients answer
// 304. Each round opens one mutual-TLS connection (the Syncer keeps none between rounds).
func BenchmarkSyncOnceUnchanged(b *testing.B) {
	srv := mgmttest.New(b, mgmttest.Options{Config: []byte(goodConfig), Clients: []byte("\n")})
	srv.AddCode("C", mgmttest.CodeValid)
	res, err := mgmt.Register(context.Background(), mgmt.RegisterOptions{Code: "C", Cloud: srv.URL, CA: srv.CAPEM, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	env := newSyncer(b, srv, res.Registration, nil)
	if err := env.s.SyncOnce(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := env.s.SyncOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
