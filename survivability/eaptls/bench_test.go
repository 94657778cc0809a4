package eaptls

import (
	"context"
	"crypto/tls"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"
)

// BenchmarkServerHandshake runs whole EAP-TLS authentications in process
// (ECDSA P-256 server and client certificates, VerifyPeer doing a real chain
// verification) and reports the time spent inside the server's Start and
// Step calls per authentication as server-µs/auth. The handshake goroutine
// works only while Step waits for it, so on an otherwise idle machine this is
// the server's CPU per authentication (an upper bound on a loaded machine);
// ns/op and both-cpu-µs/auth include the client's work.
//
//	go test -run '^$' -bench ServerHandshake -benchtime 2000x ./survivability/eaptls
func BenchmarkServerHandshake(b *testing.B) {
	p := loadPKI(b)
	for _, v := range []struct {
		name    string
		version uint16
		client  tls.Certificate
		server  *tls.Certificate // nil: the ECDSA P-256 server certificate
	}{
		{"tls13/ecdsa", tls.VersionTLS13, p.clientEC, nil},
		{"tls12/ecdsa", tls.VersionTLS12, p.clientEC, nil},
		{"tls13/rsa-client", tls.VersionTLS13, p.clientRSA, nil},
		// An RSA-2048 server certificate (under two intermediates): the server signs with
		// RSA-PSS, several times the CPU of an ECDSA P-256 signature in Go.
		{"tls13/rsa-server", tls.VersionTLS13, p.clientEC, &p.serverDeep},
		{"tls12/rsa-server", tls.VersionTLS12, p.clientEC, &p.serverDeep},
	} {
		b.Run(v.name, func(b *testing.B) {
			scfg := serverConfig(p)
			scfg.MaxVersion = v.version
			if v.server != nil {
				scfg.Certificates = []tls.Certificate{*v.server}
			}
			ccfg := clientConfig(p, v.client)
			var server time.Duration
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				server += authenticate(b, scfg, ccfg)
			}
			cpu := processCPU(b) - cpu0
			b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-µs/auth")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "both-cpu-µs/auth")
		})
	}
}

// processCPU is the user+system CPU time of this process (server and client
// together).
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// authenticate runs one conversation and returns the time spent in server
// calls. Server and client calls run under pprof labels side=server and
// side=client, inherited by their handshake goroutines, so a CPU profile
// splits the cost exactly:
//
//	go test -run '^$' -bench ServerHandshake/tls13/ecdsa -benchtime 3000x -cpuprofile cpu.out
//	go tool pprof -tagfocus side=server -top cpu.out | head -3
func authenticate(b *testing.B, scfg *ServerConfig, ccfg *ClientConfig) time.Duration {
	s, c := NewServer(scfg), NewClient(ccfg)
	defer s.Close()
	defer c.Close()
	var spent time.Duration
	server := func(f func()) {
		start := time.Now()
		pprof.Do(context.Background(), serverLabels, func(context.Context) { f() })
		spent += time.Since(start)
	}
	client := func(f func()) {
		pprof.Do(context.Background(), clientLabels, func(context.Context) { f() })
	}
	var (
		req  []byte
		err  error
		st   State
		resp []byte
		done bool
	)
	server(func() { req, err = s.Start(c.Identity(1)) })
	if err != nil {
		b.Fatal(err)
	}
	for range 100 {
		client(func() { resp, done, err = c.Step(req) })
		if done {
			if err != nil || c.Result() == nil {
				b.Fatalf("client: %v", err)
			}
			return spent
		}
		server(func() { req, st, err = s.Step(resp) })
		if st == Failed {
			b.Fatalf("server: %v", err)
		}
	}
	b.Fatal("conversation did not end")
	return 0
}

var (
	serverLabels = pprof.Labels("side", "server")
	clientLabels = pprof.Labels("side", "client")
)
