package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxedge/edge/mgmt"
)

// TestDoctorJSONGolden pins mxedge.doctor.v1 (docs/operations.md) on a healthy lab, with the clock
// check skipped as in a container.
func TestDoctorJSONGolden(t *testing.T) {
	d := newDoctorLab(t)
	path := filepath.Join(d.lab.Dir, "doctor.yaml")
	if err := os.WriteFile(path, []byte(d.text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runOps(t, newDoctorCmdEnv(testDoctorEnv(false)), "--config", path, "--skip", "clock", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var r doctorReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Schema != "mxedge.doctor.v1" || r.Summary.Skipped != 1 || r.Summary.Fail != 0 {
		t.Fatalf("%v %+v", err, r)
	}
	out = strings.ReplaceAll(out, d.lab.Dir, "LAB")
	out = strings.NewReplacer(d.lab.Auth.String(), "AUTH", d.lab.Acct.String(), "ACCT", d.lab.Upstream.String(), "UPSTREAM").Replace(out)
	out = dateRE.ReplaceAllString(out, "DATE")
	out = daysRE.ReplaceAllString(out, "(N days)")
	opsGolden(t, "doctor_ok_json.golden", out)

	if _, err := runOps(t, newDoctorCmdEnv(testDoctorEnv(true)), "--config", path, "--skip", "clocks"); err == nil || !strings.Contains(err.Error(), `"clocks" is not one of`) {
		t.Fatalf("--skip clocks: %v", err)
	}
}

var pidRE = regexp.MustCompile(`\(pid \d+\)`)

// TestDoctorPortTaken: a RADIUS port another process holds fails, naming the holder from /proc.
func TestDoctorPortTaken(t *testing.T) {
	d := newDoctorLab(t)
	held, err := net.ListenPacket("udp", d.lab.Auth.String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, err := d.run(t, testDoctorEnv(true), d.text)
	if err == nil {
		t.Fatalf("doctor passed with the auth port taken:\n%s", out)
	}
	self := filepath.Base(os.Args[0])
	want := "FAIL  port listen.auth[0]: AUTH/udp is already in use by " + self + " (pid N)"
	if got := pidRE.ReplaceAllString(out, "(pid N)"); !strings.Contains(got, want) || !strings.Contains(got, "PASS  port listen.acct[0]: ACCT/udp is free") {
		t.Fatalf("want %q in\n%s", want, got)
	}
}

// TestDoctorRegisteredEdge: without --config, a registered edge's doctor checks the cloud
// configuration the regfile names (what `mxedge run` loads), and the registration files' modes.
func TestDoctorRegisteredEdge(t *testing.T) {
	d := newDoctorLab(t)
	state := t.TempDir()
	cloud := filepath.Join(state, mgmt.CloudConfigName)
	if err := os.WriteFile(cloud, []byte(d.text), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(state, mgmt.KeyName)
	if err := os.WriteFile(key, []byte("not checked here"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(key, 0o644)
	reg := mgmt.Registration{Version: mgmt.RegfileVersion, EdgeID: "e1", Cloud: "https://cloud.test", RegisteredAt: time.Unix(0, 0),
		Certificate: filepath.Join(state, mgmt.CertName), Key: key, CABundle: filepath.Join(state, mgmt.CABundleName), Config: cloud}
	b, _ := json.Marshal(reg)
	if err := os.WriteFile(mgmt.RegfilePath(state), b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := testDoctorEnv(true)
	env.stateDir = state
	out, err := runOps(t, newDoctorCmdEnv(env))
	out = strings.ReplaceAll(out, state, "STATE")
	if err == nil {
		t.Fatalf("doctor passed with a loose registration key:\n%s", out)
	}
	for _, want := range []string{"config: STATE/cloud.yaml is valid", "PASS  registration regfile: STATE/mxedge.reg is mode 0600",
		"FAIL  registration key: STATE/edge.key is mode 0644: readable by others"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in\n%s (%v)", want, out, err)
		}
	}
}

// TestDoctorUsesDaemonResolver: the upstream's name is known only to the DNS server in
// upstreams.dns.servers (a miekg/dns server on loopback), as the daemon's resolver would ask it.
func TestDoctorUsesDaemonResolver(t *testing.T) {
	d := newDoctorLab(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == "cloud.doctor.test." && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(127, 0, 0, 1)})
		} else if q.Question[0].Name != "cloud.doctor.test." {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	port := d.lab.Upstream.Port()
	text := strings.Replace(d.text, "address: "+d.lab.Upstream.String(),
		"address: cloud.doctor.test:"+strconv.Itoa(int(port))+"\n      server_name: localhost", 1)
	text = strings.Replace(text, "upstreams:\n", "upstreams:\n  dns: {servers: [\""+pc.LocalAddr().String()+"\"]}\n", 1)
	out, err := d.run(t, testDoctorEnv(true), text)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "PASS  dns lab-cloud: cloud.doctor.test -> UPSTREAM") || !strings.Contains(out, "PASS  radsec lab-cloud") {
		t.Fatalf("resolution through upstreams.dns.servers:\n%s", out)
	}
}
