package edge_test

// A cluster of edges on one LAN, each with its own WAN link to FreeRADIUS (the cloud) behind a
// router, all in network namespaces (edge/peertest/site.go). The NAS is a Go NAS on the LAN. The
// cloud's answers carry a Class (never replayed from the cache), so an answer that has it came from
// the cloud, through whichever edge, and one without it was decided locally.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/peertest"
	"mxedge/pki"
	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
)

type clusterSite struct {
	site  *peertest.Site
	fr    *peertest.FreeRADIUS
	bin   string
	known []knownMAC
	edges []*clusterEdge
	lab   *pkitest.Lab
}

type clusterEdge struct {
	name    string
	dir     string
	socket  string
	logPath string
	ns      string
	cfgPath string
	mx      *peertest.Process
}

var clusterNames = []string{"edge-a", "edge-b", "edge-c", "edge-d"}

// clusterSiteOptions add to every edge's configuration.
type clusterSiteOptions struct {
	// coa: the NAS takes CoA on SiteNASAddr:3799 (coa_port), and each edge has a Dynamic
	// Authorization listener on its LAN address for the on-prem client "ops" on the NAS's host.
	coa bool
	// extra, when set, returns YAML appended to edge i's configuration (an identity: section).
	extra func(i int) string
}

// startClusterSite starts n edges; the last `wrongKey` of them get a key of their own.
func startClusterSite(t *testing.T, n, wrongKey int, so ...clusterSiteOptions) *clusterSite {
	t.Helper()
	peertest.Require(t, "freeradius", "ip")
	cs := &clusterSite{site: peertest.StartSite(t, n), bin: mxedgeBinary(t)}
	lab := pkitest.Must(t)
	cs.lab = lab
	var us []peertest.User
	for i := range 60 {
		k := knownMAC{mac: fmt.Sprintf("02bb0000%04x", i), vlan: fmt.Sprint(2000 + i)}
		cs.known = append(cs.known, k)
		us = append(us, peertest.User{Name: k.mac, MAB: true, Reply: []string{
			`Tunnel-Type = VLAN`, `Tunnel-Medium-Type = IEEE-802`,
			fmt.Sprintf(`Tunnel-Private-Group-Id = "%s"`, k.vlan), fmt.Sprintf(`Class = "%s"`, netnsCloudClass),
		}})
	}
	us = append(us, peertest.User{Name: "DEFAULT", Reject: true, Reply: []string{fmt.Sprintf(`Reply-Message = "%s"`, netnsCloudReject)}})
	var wans []string
	for i := range n {
		wans = append(wans, peertest.SiteWANAddr(i).String())
	}
	cloud := netip.AddrPortFrom(peertest.SiteCloudAddr, netnsRadSecPort).String()
	cs.fr = peertest.StartFreeRADIUS(t, peertest.FreeRADIUSOptions{
		NetNS: cs.site.Cloud, RadSecAddr: cloud, RadSecClients: wans,
		ServerCert: lab.ServerCert, ServerKey: lab.ServerKey, CA: lab.CAFile, Users: us,
	})
	keys := []string{writeClusterKey(t), writeClusterKey(t)}
	for i := range n {
		name := clusterNames[i]
		dir := t.TempDir()
		is, err := lab.CA.Issue(pki.IssueOptions{CommonName: name, DNSNames: []string{name}, Usage: pki.UsageServer | pki.UsageClient})
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, "edge.pem"), filepath.Join(dir, "edge.key")
		if err := pki.WriteCertificates(cert, true, is.Cert); err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteKey(key, is.Key, true); err != nil {
			t.Fatal(err)
		}
		var join []string
		for j := range n {
			if j != i {
				join = append(join, fmt.Sprintf("%q", peertest.SiteLANAddr(j).String()+":7946"))
			}
		}
		keyFile := keys[0]
		if i >= n-wrongKey {
			keyFile = keys[1]
		}
		lan := peertest.SiteLANAddr(i).String()
		coaPort, dynauth := "", ""
		if len(so) > 0 && so[0].coa {
			coaPort = "\n    coa_port: 3799"
			dynauth = fmt.Sprintf("dynamic_authorization:\n  listen: [\"%s:3799\"]\n  clients:\n    - {name: ops, address: %s/32, secret: %q}\n",
				lan, peertest.SiteNASAddr, coaSecret)
		}
		if len(so) > 0 && so[0].extra != nil {
			dynauth += so[0].extra(i)
		}
		cfg := fmt.Sprintf(`
cache:
  path: %[1]s/cache.db
control:
  socket: %[1]s/control.sock
metrics:
  listen: "%[2]s:9812"
log:
  level: info
  format: text
listen:
  auth: ["%[2]s:1812"]
  acct: ["%[2]s:1813"]
clients:
  - name: nas
    address: %[3]s
    secret: %[4]q
    vendor: cisco%[15]s
upstreams:
  tls: {certificate: %[5]s, key: %[6]s, ca: %[7]s}
  servers:
    - name: cloud
      address: %[8]s
      server_name: localhost
radsec:
  listen: ["%[2]s:2083"]
  tls: {certificate: %[9]s, key: %[10]s, ca: %[7]s}
  peers:
    - name: cluster
      address: 198.18.10.0/24
      cert_names: [edge-a, edge-b, edge-c, edge-d]
survivability:
  default_mab_vlan: %[11]q
  spool:
    path: %[1]s/spool.db
cluster:
  enabled: true
  name: %[12]s
  bind: "%[2]s:7946"
  join: [%[13]s]
  key_files: [%[14]s]
  sync_interval: 1s
  tls: {certificate: %[9]s, key: %[10]s, ca: %[7]s}
%[16]s`, dir, lan, peertest.SiteNASAddr, nasSecret, lab.ClientCert, lab.ClientKey, lab.CAFile, cloud, cert, key,
			netnsDefaultVLAN, name, strings.Join(join, ", "), keyFile, coaPort, dynauth)
		e := &clusterEdge{name: name, dir: dir, socket: filepath.Join(dir, "control.sock"), logPath: filepath.Join(dir, "mxedge.log"),
			ns: cs.site.Edges[i], cfgPath: filepath.Join(dir, "mxedge.yaml")}
		if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(cs.bin, "check", "-c", e.cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("mxedge check %s: %v\n%s", name, err, out)
		}
		cs.edges = append(cs.edges, e)
	}
	for _, e := range cs.edges {
		p, err := peertest.StartProcess(peertest.ProcessOptions{Name: e.name, NetNS: e.ns, LogPath: e.logPath, Bin: cs.bin,
			Args: []string{"run", "--config", e.cfgPath}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		e.mx = p
	}
	for _, e := range cs.edges {
		if err := e.mx.WaitLog(t.Context(), "mxedge started", 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range cs.edges {
				t.Logf("%s log tail:\n%s", e.name, tailString(readFile(e.logPath), 25))
			}
		}
	})
	return cs
}

func writeClusterKey(t *testing.T) string {
	k := make([]byte, 32)
	rand.Read(k)
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (cs *clusterSite) status(t *testing.T, e *clusterEdge) edge.ClusterStatus {
	t.Helper()
	out, err := exec.Command(cs.bin, "cluster", "status", "-o", "json", "--socket", e.socket).Output()
	if err != nil {
		t.Fatalf("cluster status %s: %v", e.name, err)
	}
	var st edge.ClusterStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("cluster status %s: %v\n%s", e.name, err, out)
	}
	return st
}

func (cs *clusterSite) cached(e *clusterEdge, mac string) bool {
	return exec.Command(cs.bin, "cache", "show", mac, "--socket", e.socket).Run() == nil
}

func aliveMembers(st edge.ClusterStatus) int {
	n := 0
	for _, m := range st.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

func clusterWait(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(t0)
}

// nasTo returns a NAS on the LAN that talks to edge i.
func (cs *clusterSite) nasTo(t *testing.T, i int) *wanNAS {
	return newWANNASFrom(t, cs.site.LAN, peertest.SiteNASAddr, netip.AddrPortFrom(peertest.SiteLANAddr(i), 1812))
}

// authorize sends one MAB request for k and returns whether the cloud's answer (Class) with k's
// VLAN came back, whether a local one did, and its VLAN.
func authorize(t *testing.T, n *wanNAS, k knownMAC) (cloud, local bool, vlan string) {
	_, a, ok := n.exchange(t.Context(), func(id uint8) packet.Packet { return mabRequest(t, id, k.mac) }, authRetry)
	if !ok {
		return false, false, ""
	}
	class, _ := a.p.Attr(packet.AttrClass)
	v, _ := a.p.Attr(packet.AttrTunnelPrivateGroupID)
	if a.p.Code() != packet.CodeAccessAccept {
		return false, false, ""
	}
	if string(class) == netnsCloudClass {
		return true, false, string(v)
	}
	return false, true, string(v)
}

// TestE2ENetnsCluster: three edges on one LAN share what they learn and cover for each other, and a
// fourth edge with another key is kept out.
func TestE2ENetnsCluster(t *testing.T) {
	cs := startClusterSite(t, 4, 1)
	a, b, c, d := cs.edges[0], cs.edges[1], cs.edges[2], cs.edges[3]
	ctx := t.Context()

	took := clusterWait(t, 20*time.Second, "three members alive on every keyed edge", func() bool {
		for _, e := range []*clusterEdge{a, b, c} {
			if aliveMembers(cs.status(t, e)) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("membership: 3 edges alive everywhere %s after start", ms(took))
	if st := cs.status(t, d); len(st.Members) != 1 {
		t.Fatalf("the edge with another key sees %d members, want itself only", len(st.Members))
	}
	if !strings.Contains(readFile(d.logPath), "cluster join failed") {
		t.Errorf("edge-d logged no failed join")
	}

	// 1. Learned on A, served by C during a full outage, with the cloud's VLAN.
	nasA, nasC := cs.nasTo(t, 0), cs.nasTo(t, 2)
	learnedOnA := cs.known[:10]
	for _, k := range learnedOnA {
		var cloud bool
		for range 20 {
			if cloud, _, _ = authorize(t, nasA, k); cloud {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !cloud {
			t.Fatalf("%s: no cloud answer through edge-a", k.mac)
		}
	}
	t0 := time.Now()
	took = clusterWait(t, 10*time.Second, "the 10 clients learned on edge-a in edge-c's cache", func() bool {
		for _, k := range learnedOnA {
			if !cs.cached(c, k.mac) {
				return false
			}
		}
		return true
	})
	t.Logf("replication: 10 decisions on edge-a in edge-c's cache %s after the last answer (%s after the first)", ms(took), ms(time.Since(t0)+took))
	for i := range 3 {
		if err := cs.site.CutWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	clusterWait(t, 10*time.Second, "every edge sees no edge reach the cloud", func() bool {
		for _, e := range []*clusterEdge{a, b, c} {
			for _, m := range cs.status(t, e).Members {
				if m.ReachesCloud {
					return false
				}
			}
		}
		return true
	})
	for _, k := range learnedOnA {
		cloud, local, vlan := authorize(t, nasC, k)
		if cloud || !local || vlan != k.vlan {
			t.Fatalf("%s through edge-c in a full outage: cloud=%v local=%v VLAN %q, want the cached VLAN %s", k.mac, cloud, local, vlan, k.vlan)
		}
	}
	t.Logf("full outage: edge-c served all 10 clients learned on edge-a with their cloud VLAN")
	for i := range 3 {
		if err := cs.site.RestoreWAN(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	clusterWait(t, 20*time.Second, "every edge reaches the cloud again", func() bool {
		for _, m := range cs.status(t, a).Members {
			if !m.ReachesCloud {
				return false
			}
		}
		return true
	})

	// 2. B's WAN is cut while its NAS keeps authenticating: the cloud answers through a peer.
	nasB := cs.nasTo(t, 1)
	var sent, cloudAns, localAns, unanswered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stream := cs.known[10:40]
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				k := stream[i%len(stream)]
				sent.Add(1)
				cloud, local, _ := authorize(t, nasB, k)
				switch {
				case cloud:
					cloudAns.Add(1)
				case local:
					localAns.Add(1)
				default:
					unanswered.Add(1)
				}
				time.Sleep(40 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	cut := time.Now()
	if err := cs.site.CutWAN(ctx, 1); err != nil {
		t.Fatal(err)
	}
	took = clusterWait(t, 15*time.Second, "edge-b answering through a peer", func() bool {
		w := cs.status(t, b).WANViaPeer
		return w != nil && w.Answered > 0
	})
	t.Logf("WAN via peer: edge-b's first answer through a peer %s after its WAN was cut", ms(took))
	time.Sleep(8 * time.Second)
	close(stop)
	wg.Wait()
	st := cs.status(t, b)
	t.Logf("edge-b's WAN cut at %s: %d requests, %d cloud answers, %d local, %d unanswered; via peer %+v",
		cut.Format("15:04:05.000"), sent.Load(), cloudAns.Load(), localAns.Load(), unanswered.Load(), *st.WANViaPeer)
	if localAns.Load() != 0 || unanswered.Load() != 0 {
		t.Errorf("with edge-a and edge-c reaching the cloud, edge-b answered %d locally and left %d unanswered", localAns.Load(), unanswered.Load())
	}
	if st.WANViaPeer.Answered == 0 {
		t.Errorf("edge-b answered nothing through a peer")
	}
	if err := cs.site.RestoreWAN(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// 3. C is partitioned from the LAN while A learns; after the heal C converges.
	if err := cs.site.PartitionLAN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	clusterWait(t, 30*time.Second, "edge-a sees edge-c gone", func() bool {
		for _, m := range cs.status(t, a).Members {
			if m.Name == "edge-c" && m.State == "alive" {
				return false
			}
		}
		return true
	})
	partitioned := cs.known[40:60]
	for _, k := range partitioned {
		if cloud, _, _ := authorize(t, nasA, k); !cloud {
			t.Fatalf("%s: no cloud answer through edge-a", k.mac)
		}
	}
	if cs.cached(c, partitioned[0].mac) {
		t.Fatal("the partitioned edge-c got a record learned after the partition")
	}
	if err := cs.site.HealLAN(ctx, 2); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	t.Logf("partition healed at %s", healed.Format("15:04:05.000"))
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range []*clusterEdge{a, b, c} {
				out, _ := exec.Command(cs.bin, "cluster", "status", "--socket", e.socket).CombinedOutput()
				t.Logf("%s cluster status:\n%s", e.name, out)
			}
			for _, k := range partitioned {
				t.Logf("%s on a=%v b=%v c=%v", k.mac, cs.cached(a, k.mac), cs.cached(b, k.mac), cs.cached(c, k.mac))
			}
		}
	})
	took = clusterWait(t, 30*time.Second, "edge-c rejoined and holds the 20 records learned meanwhile", func() bool {
		if aliveMembers(cs.status(t, c)) != 3 {
			return false
		}
		for _, k := range partitioned {
			if !cs.cached(c, k.mac) {
				return false
			}
		}
		return true
	})
	t.Logf("partition: edge-c rejoined and converged %s after the heal (at %s)", ms(took), healed.Format("15:04:05.000"))

	// The edge with the other key never got a record.
	for _, k := range cs.known[:10] {
		if cs.cached(d, k.mac) {
			t.Fatalf("edge-d (another key) holds %s", k.mac)
		}
	}
	st = cs.status(t, a)
	if st.Replication.Malformed != 0 {
		t.Errorf("edge-a refused %d malformed messages", st.Replication.Malformed)
	}
	if st.Replication.KeyRefused == 0 {
		t.Errorf("edge-a counted none of edge-d's packets under another key")
	}
	if n := strings.Count(readFile(a.logPath), "not encrypted with a cluster key"); n > 2 {
		t.Errorf("edge-a logged the wrong-key refusal %d times in a minute, want it rate-limited", n)
	}

	// The cluster's metrics pass promtool and say what status says, once edge-b's failback (held
	// back after its flap, survivability/health.go) is seen by edge-a.
	clusterWait(t, 30*time.Second, "edge-a sees three alive edges reach the cloud", func() bool {
		n := 0
		for _, m := range cs.status(t, a).Members {
			if m.State == "alive" && m.ReachesCloud {
				n++
			}
		}
		return n == 3
	})
	scrape := cs.scrape(t, 0)
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{`mxedge_cluster_members{state="alive"} 3`, `mxedge_cluster_members_reaching_cloud 3`} {
		if !strings.Contains(scrape, want+"\n") {
			t.Errorf("edge-a's metrics lack %q; its cluster lines:\n%s", want, grepLines(scrape, "mxedge_cluster_members"))
		}
	}
	for _, want := range []string{"mxedge_cluster_records_merged_total", "mxedge_cluster_key_refused_total", "mxedge_cluster_wan_via_peer_requests_total"} {
		if !strings.Contains(scrape, "\n"+want) {
			t.Errorf("edge-a's metrics lack %s", want)
		}
	}
}

// scrape reads edge i's /metrics from the LAN.
func (cs *clusterSite) scrape(t *testing.T, i int) string {
	t.Helper()
	c, err := peertest.DialTCPIn(cs.site.LAN, peertest.SiteLANAddr(i).String()+":9812", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: edge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.0 200") && !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("scrape: %.200s", b)
	}
	return body
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
