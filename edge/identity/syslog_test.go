package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"crypto/tls"

	"mxedge/edge/peertest"
)

// TestSyslogRsyslog sends events to a real rsyslog over UDP (RFC 5426), TCP (RFC 6587 octet
// counting) and TLS (RFC 5425, rsyslog-gnutls) and reads back what rsyslog parsed: the MSGID is
// the event type and mmpstrucdata finds every field in the structured data, no regex needed.
func TestSyslogRsyslog(t *testing.T) {
	certs := peertest.NewCerts(t)
	udp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	tcp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	rs := peertest.StartRsyslog(t, peertest.RsyslogOptions{UDPAddr: udp, TCPAddr: tcp, TLSAddr: tlsAddr,
		CA: certs.CA, Cert: certs.ServerCert, Key: certs.ServerKey})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certs.CA)
	pool.AppendCertsFromPEM(pem)
	sink := func(name, transport, addr string) SinkOptions {
		return SinkOptions{Name: name, Type: TypeSyslog, Batch: 50, Syslog: &SyslogOptions{Address: addr, Transport: transport,
			TLS: &tls.Config{RootCAs: pool, ServerName: "localhost"}, Hostname: "edge-1"}}
	}
	p, err := New(Options{Dir: t.TempDir(), BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Domains: Domains{Sites: map[string]string{"hq": "hq.example"}},
		Sinks:   []SinkOptions{sink("siem-udp", "udp", udp), sink("siem-tcp", "tcp", tcp), sink("siem-tls", "tls", tlsAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := runPusher(t, p)
	defer stop()
	const n = 20
	for i := range n {
		for ph := range 3 {
			lifecycle(p, i, ph)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	recs, err := rs.WaitRecords(ctx, 3*3*n)
	if err != nil {
		t.Fatalf("%v\n%s", err, rs.LogTail(20))
	}
	by := map[string][]peertest.SyslogRecord{}
	for _, r := range recs {
		by[r.Transport] = append(by[r.Transport], r)
	}
	for _, tr := range []string{"udp", "tcp", "tls"} {
		got := by[tr]
		if len(got) != 3*n {
			t.Fatalf("%s: %d records, want %d", tr, len(got), 3*n)
		}
		next := map[string]int{}
		for _, r := range got {
			sd := r.SD[SyslogSDID]
			if sd == nil {
				t.Fatalf("%s: no %s element in %+v", tr, SyslogSDID, r)
			}
			if r.MsgID != sd["type"] || r.AppName != "mxedge" || r.Hostname != "edge-1" || r.Facility != "authpriv" || r.Severity != "info" {
				t.Fatalf("%s: header %+v", tr, r)
			}
			if !strings.HasPrefix(sd["user"], "u") || sd["domain"] != "example.com" || sd["nas"] != "sw1" || sd["site"] != "hq" {
				t.Fatalf("%s: structured data %v", tr, sd)
			}
			if !strings.Contains(r.StructuredData, `ip="10.`) {
				t.Fatalf("%s: raw structured data %q", tr, r.StructuredData)
			}
			if tr != "udp" { // a stream keeps order; datagrams may not
				want := []string{"connect", "update", "disconnect"}[next[sd["session_id"]]]
				if r.MsgID != want {
					t.Fatalf("%s: session %s got %s, want %s", tr, sd["session_id"], r.MsgID, want)
				}
				next[sd["session_id"]]++
			}
		}
	}
	waitFor(t, 5*time.Second, "every sink's count", func() bool {
		for _, s := range p.Status() {
			if s.Sent != 3*n || s.State != "up" || s.SentByType["update"] != n {
				return false
			}
		}
		return true
	})
}

// TestSyslogDownAndBack: a TCP receiver that is not there yet, then is: events queued meanwhile
// all arrive once it listens.
func TestSyslogDownAndBack(t *testing.T) {
	tcp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	p, err := New(Options{Dir: t.TempDir(), BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Sinks: []SinkOptions{{Name: "siem", Type: TypeSyslog, Syslog: &SyslogOptions{Address: tcp, Transport: "tcp"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := runPusher(t, p)
	defer stop()
	for i := range 5 {
		lifecycle(p, i, 0)
	}
	waitFor(t, 5*time.Second, "down", func() bool { return p.Status()[0].State == "down" })
	rs := peertest.StartRsyslog(t, peertest.RsyslogOptions{TCPAddr: tcp})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rs.WaitRecords(ctx, 5); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "up", func() bool { s := p.Status()[0]; return s.State == "up" && s.Queued == 0 })
}
