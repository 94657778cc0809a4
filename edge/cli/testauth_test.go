package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/control"
	"mxedge/edge/lab"
	"mxedge/edge/peertest"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/radsectest"
)

// runTestAuthCmd runs `mxedge test auth ARGS` in process.
func runTestAuthCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runOps(t, newTestCmd(), append([]string{"auth"}, args...)...)
}

func TestTestAuthRadSecResponder(t *testing.T) {
	base := runtime.NumGoroutine()
	p := pkitest.Must(t)
	r, err := radsectest.Start(p.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	r.SetReply(func(b *packet.Builder, _ packet.Packet) {
		b.AddUint32(packet.AttrTunnelType, 13)
		b.AddUint32(packet.AttrTunnelMediumType, 6)
		b.AddString(packet.AttrTunnelPrivateGroupID, "300")
		b.AddVSA(9, 1, []byte("shell:priv-lvl=15"))
	})
	rs := []string{"--radsec", "--server", r.Addr().String(), "--ca", p.CAFile, "--cert", p.ClientCert, "--key", p.ClientKey}
	tests := []struct {
		golden string
		args   []string
		err    error
	}{
		{"testauth_radsec_pap.golden", []string{"--user", "alice", "--password", "x"}, nil},
		{"testauth_radsec_reject.golden", []string{"--user", "reject", "--password", "x"}, ErrRejected},
		{"testauth_radsec_status.golden", []string{"--status"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := runTestAuthCmd(t, append(rs, tc.args...)...)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			opsGolden(t, tc.golden, strings.ReplaceAll(out, r.Addr().String(), "SERVER"))
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		_, err := runTestAuthCmd(t, append(rs, "--secret", "nope", "--user", "alice", "--password", "x", "--timeout", "1s")...)
		if err == nil || !strings.Contains(err.Error(), "wrong --secret") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("untrusted server", func(t *testing.T) {
		other := pkitest.Must(t)
		_, err := runTestAuthCmd(t, "--radsec", "--server", r.Addr().String(), "--ca", other.CAFile, "--cert", p.ClientCert,
			"--key", p.ClientKey, "--status")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v", err)
		}
	})
	r.Close()
	checkGoroutinesCLI(t, base)
}

func TestTestAuthUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no mode", []string{"--secret", "s"}},
		{"two modes", []string{"--secret", "s", "--status", "--mac", "02:00:00:00:00:01"}},
		{"no secret over udp", []string{"--status"}},
		{"radsec without certs", []string{"--radsec", "--status"}},
		{"eap without identity", []string{"--secret", "s", "--eap-tls"}},
		{"bad mac", []string{"--secret", "s", "--mac", "nope", "--server", "127.0.0.1:1"}},
		{"unknown attr", []string{"--secret", "s", "--user", "u", "-a", "No-Such-Attr = 1"}},
		{"bad attr value", []string{"--secret", "s", "--user", "u", "-a", "NAS-Port = many"}},
		{"encrypted attr", []string{"--secret", "s", "--user", "u", "-a", "Tunnel-Password = x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runTestAuthCmd(t, tc.args...); !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}
}

// TestTestAuthExtraAttrs: --attr attributes, by dictionary name in radclient syntax, reach the
// server as the dictionary encodes them.
func TestTestAuthExtraAttrs(t *testing.T) {
	p := pkitest.Must(t)
	r, err := radsectest.Start(p.ServerTLS(), "radsec")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan [3][]byte, 1)
	r.SetReply(func(_ *packet.Builder, req packet.Packet) {
		var seen [3][]byte
		seen[0], _ = req.Attr(packet.AttrTunnelPrivateGroupID)
		seen[1], _ = req.Attr(5) // NAS-Port
		for it := req.Attrs(); ; {
			typ, v, ok := it.Next()
			if !ok {
				break
			}
			if typ == packet.AttrVendorSpecific {
				seen[2] = v
			}
		}
		select {
		case got <- seen:
		default:
		}
	})
	_, err = runTestAuthCmd(t, "--radsec", "--server", r.Addr().String(), "--ca", p.CAFile, "--cert", p.ClientCert,
		"--key", p.ClientKey, "--user", "alice", "--password", "x",
		"-a", "Tunnel-Private-Group-Id:1 = 41", "--attr", "NAS-Port = 7", "-a", `Cisco-AVPair = "a=b"`)
	if err != nil {
		t.Fatal(err)
	}
	seen := <-got
	if string(seen[0]) != "\x0141" || string(seen[1]) != "\x00\x00\x00\x07" || string(seen[2]) != "\x00\x00\x00\x09\x01\x05a=b" {
		t.Errorf("server saw %q", seen)
	}
}

func TestTestAuthNoAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = runTestAuthCmd(t, "--server", pc.LocalAddr().String(), "--secret", "s", "--status", "--timeout", "300ms", "--retries", "1")
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v", err)
	}
}

// startLabEdge runs the `mxedge run --dev` lab: the lab cloud NAC and a real Edge in front of it,
// on free loopback ports. It returns the lab and the edge's auth address.
func startLabEdge(t *testing.T) (*lab.Lab, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxlab") // short: the control socket lives here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	l, err := lab.Start(ctx, lab.Options{Dir: dir, Auth: loopback(0), Acct: loopback(0), CoA: loopback(0)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg, err := config.Load(l.ConfigPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e, err := edge.New(cfg, edge.Options{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge Run: %v", err)
		}
		l.Wait()
	})
	select {
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("lab edge not ready")
	}
	return l, e.AuthAddrs()[0].String()
}

// TestTestAuthLab drives the quick-start commands against the --dev lab: through mxedge over UDP,
// and straight at the lab cloud over RadSec.
func TestTestAuthLab(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("lab", func(t *testing.T) {
		l, server := startLabEdge(t)
		udp := []string{"--server", server, "--secret", lab.Secret}
		rs := []string{"--radsec", "--server", l.Upstream.String(), "--ca", l.PKI.CAFile, "--cert", l.PKI.ClientCert, "--key", l.PKI.ClientKey}
		tests := []struct {
			golden string
			args   []string
			err    error
		}{
			{"testauth_lab_pap.golden", append(udp, "--user", "alice", "--password", "password"), nil},
			{"testauth_lab_pap_reject.golden", append(udp, "--user", "alice", "--password", "wrong"), ErrRejected},
			{"testauth_lab_mab.golden", append(udp, "--mac", "02-00-00-00-00-01"), nil},
			{"testauth_lab_status.golden", append(udp, "--status"), nil},
			{"testauth_lab_radsec_mab.golden", append(rs, "--mac", "02:00:00:00:00:02"), nil},
		}
		for _, tc := range tests {
			t.Run(tc.golden, func(t *testing.T) {
				out, err := runTestAuthCmd(t, tc.args...)
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v\n%s", err, tc.err, out)
				}
				out = strings.ReplaceAll(out, server, "SERVER")
				opsGolden(t, tc.golden, strings.ReplaceAll(out, l.Upstream.String(), "SERVER"))
			})
		}
		t.Run("wrong secret", func(t *testing.T) {
			_, err := runTestAuthCmd(t, "--server", server, "--secret", "wrong", "--status", "--timeout", "600ms", "--retries", "0")
			if !errors.Is(err, ErrNoAnswer) { // mxedge drops a bad Message-Authenticator silently
				t.Fatalf("err = %v", err)
			}
		})
	})
	checkGoroutinesCLI(t, base)
}

// TestTestAuthEAPTLSFreeRADIUS runs EAP-TLS against a real FreeRADIUS, over UDP and over RadSec.
func TestTestAuthEAPTLSFreeRADIUS(t *testing.T) {
	certs := peertest.NewCerts(t)
	udp := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	rsAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t))
	peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		UDPAuthAddr: udp, RadSecAddr: rsAddr,
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users: []peertest.User{
			{Name: "client.example", Reply: []string{`Tunnel-Type = VLAN`, `Tunnel-Medium-Type = IEEE-802`, `Tunnel-Private-Group-Id = "700"`}},
			{Name: "anonymous@example.org", Reply: []string{`Tunnel-Type = VLAN`, `Tunnel-Medium-Type = IEEE-802`, `Tunnel-Private-Group-Id = "701"`}},
		},
	})
	expired, expiredKey, err := certs.Issue("expired", peertest.CertSpec{CommonName: "expired.example", Client: true, NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	eap := []string{"--eap-tls", "--ca", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey}
	tests := []struct {
		golden string
		args   []string
		err    error
	}{
		{"testauth_fr_eaptls_udp.golden", append([]string{"--server", udp, "--secret", "testing123", "--identity", "client.example"}, eap...), nil},
		{"testauth_fr_eaptls_radsec.golden", append([]string{"--radsec", "--server", rsAddr, "--identity", "client.example"}, eap...), nil},
		{"testauth_fr_eaptls_anonymous.golden", append([]string{"--server", udp, "--secret", "testing123", "--identity", "host@example.org", "--anonymous"}, eap...), nil},
		{"testauth_fr_eaptls_expired.golden", []string{"--server", udp, "--secret", "testing123", "--identity", "expired.example",
			"--eap-tls", "--ca", certs.CA, "--cert", expired, "--key", expiredKey}, ErrRejected},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := runTestAuthCmd(t, tc.args...)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v\n%s", err, tc.err, out)
			}
			out = strings.ReplaceAll(strings.ReplaceAll(out, udp, "SERVER"), rsAddr, "SERVER")
			opsGolden(t, tc.golden, out)
		})
	}
}

func checkGoroutinesCLI(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLabOperability is the quick start end to end: requests through the --dev lab's mxedge, then
// status, events and clients read back over its control socket.
func TestLabOperability(t *testing.T) {
	l, server := startLabEdge(t)
	udp := []string{"--server", server, "--secret", lab.Secret}
	for _, args := range [][]string{
		{"--user", "alice", "--password", "password"},
		{"--mac", "02:00:00:00:00:01"},
	} {
		if out, err := runTestAuthCmd(t, append(udp, args...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if _, err := runTestAuthCmd(t, append(udp, "--user", "alice", "--password", "wrong")...); !errors.Is(err, ErrRejected) {
		t.Fatalf("reject: %v", err)
	}
	sock := filepath.Join(l.Dir, "control.sock")
	env := opsEnv{now: time.Now, timeout: 2 * time.Second}
	out, err := runOps(t, newEventsCmdEnv(env), "--socket", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	// Events arrive in order of the answers; the observer runs before the reply is sent.
	for _, want := range []string{
		`"decision":"accept","method":"pap","mac":"","identity":"alice","nas":"lab-nas","site":"lab","vlan":"300","source":"upstream","upstream":"lab-cloud"`,
		`"decision":"accept","method":"mab","mac":"02:00:00:00:00:01","identity":"020000000001","nas":"lab-nas","site":"lab","vlan":"41","source":"upstream","upstream":"lab-cloud"`,
		`"decision":"reject","method":"pap","mac":"","identity":"alice","nas":"lab-nas","site":"lab","vlan":"","source":"upstream","upstream":"lab-cloud"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("events lack %s\n%s", want, out)
		}
	}
	out, err = runOps(t, newClientsCmdEnv(env), "--socket", sock, "--json")
	if err != nil || !strings.Contains(out, `"name":"lab-nas","address":"127.0.0.0/8","vendor":"cisco","site":"lab","requests":3,"responses":3`) {
		t.Errorf("clients: %v\n%s", err, out)
	}
	out, err = runOps(t, newStatusCmdEnv(env), "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mxedge status:\n%s", out)
	for _, want := range []string{"mode         up since", "upstreams    1 of 1 up", "lab-cloud", "nas clients  2 configured, 1 seen", // the lab NAS and the eduroam national server
		"received 3, forwarded 3, upstream answered 3", "spool        0 accounting records"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q\n%s", want, out)
		}
	}
}

// TestLabWANCut drives the quick start's WAN cut: with the cut file present the lab cloud goes silent,
// mxedge answers locally (the learned MAB client keeps VLAN 41, an unknown one gets the lab's default
// 99, PAP gets no answer under the default password_logins: no-answer), and removing the file fails
// back.
func TestLabWANCut(t *testing.T) {
	l, server := startLabEdge(t)
	udp := []string{"--server", server, "--secret", lab.Secret}
	if out, err := runTestAuthCmd(t, append(udp, "--mac", "02:00:00:00:00:01")...); err != nil || !strings.Contains(out, `"41"`) {
		t.Fatalf("before the cut: %v\n%s", err, out)
	}
	eap := append(append([]string{}, udp...), "--eap-tls", "--identity", "laptop.lab.test", "--anonymous",
		"--cert", l.LaptopCert, "--key", l.LaptopKey, "--ca", l.PKI.CAFile)
	if out, err := runTestAuthCmd(t, eap...); err != nil || !strings.Contains(out, `"300"`) || !strings.Contains(out, "match") {
		t.Fatalf("EAP-TLS through the lab cloud: %v\n%s", err, out)
	}
	sock := filepath.Join(l.Dir, "control.sock")
	mode := func() string {
		st, err := control.Dial(sock).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Mode string }
		json.Unmarshal(st, &s)
		return s.Mode
	}
	os.WriteFile(l.CutFile(), nil, 0o600)
	deadline := time.Now().Add(6 * time.Second)
	for mode() != "down" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m := mode(); m != "down" {
		t.Fatalf("mode after the cut: %s", m)
	}
	if out, err := runTestAuthCmd(t, append(udp, "--mac", "02:00:00:00:00:01")...); err != nil || !strings.Contains(out, `"41"`) {
		t.Fatalf("cached client during the cut: %v\n%s", err, out)
	}
	if out, err := runTestAuthCmd(t, append(udp, "--mac", "02:00:00:00:00:77")...); err != nil || !strings.Contains(out, `"99"`) {
		t.Fatalf("unknown client during the cut: %v\n%s", err, out)
	}
	if _, err := runTestAuthCmd(t, append(udp, "--user", "alice", "--password", "password")...); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("PAP during the cut: %v", err)
	}
	// The laptop authenticates against mxedge itself and keeps the VLAN the cloud gave it.
	if out, err := runTestAuthCmd(t, eap...); err != nil || !strings.Contains(out, `"300"`) || !strings.Contains(out, "match") {
		t.Fatalf("local EAP-TLS during the cut: %v\n%s", err, out)
	}
	os.Remove(l.CutFile())
	deadline = time.Now().Add(20 * time.Second)
	for mode() != "up" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := mode(); m != "up" {
		t.Fatalf("no failback: %s", m)
	}
}
