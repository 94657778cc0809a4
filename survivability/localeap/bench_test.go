package localeap

import (
	"crypto/tls"
	"syscall"
	"testing"
	"time"

	"mxedge/proxy/packet"
	"mxedge/survivability/eaptls"
)

// BenchmarkServe runs whole EAP-TLS authentications through Handler.Serve with the eaptls Go
// client in process: ECDSA P-256 on both sides, the server sending a chain of two intermediates,
// pki.Verify with a CRL checker, default VLAN. Metrics:
//   - server-µs/auth: time spent inside Serve per authentication. The conversation is lock-step
//     and the client does not run while Serve waits for crypto/tls, so on an idle machine this is
//     the server's CPU per authentication (an upper bound when other jobs compete for the CPU);
//   - cpu-µs/auth: the process's user+system CPU (getrusage) per authentication, both sides,
//     the RADIUS encoding of requests and the garbage collector included.
func BenchmarkServe(b *testing.B) {
	l := testLab(b)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		b.Run(tls.VersionName(v), func(b *testing.B) {
			h, _ := newHandler(b, l.options(b))
			cfg := l.clientConfig(cliECDSA)
			cfg.MinVersion, cfg.MaxVersion = v, v
			var inServe time.Duration
			n := 0
			cpu0 := cpuTime()
			b.ReportAllocs()
			for b.Loop() {
				c := eaptls.NewClient(cfg)
				eap := c.Identity(1)
				var state []byte
				for id := uint8(0); ; id++ {
					req := accessRequest(b, id, eap, state, testMAC, true)
					t0 := time.Now()
					resp := h.Serve(req)
					inServe += time.Since(t0)
					if resp.Code() == packet.CodeAccessAccept {
						break
					}
					if resp.Code() != packet.CodeAccessChallenge {
						b.Fatalf("got %v", resp.Code())
					}
					ra := readRequest(resp)
					next, done, err := c.Step(ra.eap)
					if done {
						b.Fatalf("client: %v", err)
					}
					eap, state = next, ra.state
				}
				c.Close()
				n++
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(inServe.Microseconds())/float64(n), "server-µs/auth")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/auth")
		})
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
