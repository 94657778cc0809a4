package edge_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxedge/edge/peertest"
	"mxedge/proxy/packet"
)

// acctNAS is a NAS sending accounting the way RFC 2866 §2 and RFC 5080 §2.2.1 describe: each
// record is retransmitted, unchanged, every second until an Accounting-Response comes back.
type acctNAS struct {
	to        netip.AddrPort
	mu        sync.Mutex
	firstSent map[string]time.Time
	acked     map[string]time.Time
}

func newAcctNAS(to string) *acctNAS {
	return &acctNAS{to: netip.MustParseAddrPort(to), firstSent: map[string]time.Time{}, acked: map[string]time.Time{}}
}

// send delivers p (record id) and reports whether it was acknowledged before ctx ended.
func (n *acctNAS) send(ctx context.Context, id string, p []byte) bool {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	defer conn.Close()
	n.mu.Lock()
	n.firstSent[id] = time.Now()
	n.mu.Unlock()
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		conn.WriteToUDPAddrPort(p, n.to)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			k, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // retransmit
			}
			if k >= 20 && buf[0] == byte(packet.CodeAccountingResponse) && buf[1] == p[1] {
				n.mu.Lock()
				n.acked[id] = time.Now()
				n.mu.Unlock()
				return true
			}
		}
	}
	return false
}

func (n *acctNAS) times(id string) (sent, acked time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.firstSent[id], n.acked[id]
}

var acctStatuses = []struct {
	name  string
	value uint32
}{{"Start", 1}, {"Interim-Update", 3}, {"Stop", 2}}

// TestE2EAccountingKill9: 300 sessions, each Start (cloud up), then Interim-Update and Stop sent
// 20-300 ms apart without waiting for each other, while the WAN is cut. Sessions whose records
// straddle the outage detection fail their direct attempt first. mxedge (the real binary) is killed
// with SIGKILL mid-outage and restarted, and killed again while it replays after recovery, then
// restarted. FreeRADIUS must get every acknowledged record, each session's records in receipt order
// (also counting duplicates), and duplicates only for records in flight at the second kill (at most
// the replay window, 32).
func TestE2EAccountingKill9(t *testing.T) {
	const (
		sessions = 300
		window   = 32 // survivability.AccountingOptions.Window default
	)
	x := startE2E(t, 1, nil)
	rl := startRelay(t, x.frAddr[0])
	authPort, acctPort := peertest.FreePort(t), peertest.FreePort(t)
	x.stop()
	b, _ := os.ReadFile(x.cfgPath)
	cfg := replaceOnce(string(b), "address: "+x.frAddr[0], "address: "+rl.Addr())
	cfg = replaceOnce(cfg, `auth: ["127.0.0.1:0"]`, fmt.Sprintf(`auth: ["127.0.0.1:%d"]`, authPort))
	cfg = replaceOnce(cfg, `acct: ["127.0.0.1:0"]`, fmt.Sprintf(`acct: ["127.0.0.1:%d"]`, acctPort))
	cfg = strings.Replace(cfg, "level: debug", "level: info", 1)
	os.WriteFile(x.cfgPath, []byte(cfg), 0o600)

	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// start runs the binary and returns once it logged that it listens, and when.
	var ready time.Time
	start := func() *exec.Cmd {
		before := strings.Count(x.logs.String(), "mxedge started")
		cmd := exec.Command(bin, "run", "--config", x.cfgPath)
		cmd.Stderr = x.logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for deadline := time.Now().Add(10 * time.Second); strings.Count(x.logs.String(), "mxedge started") == before; {
			if time.Now().After(deadline) {
				t.Fatal("mxedge did not start within 10 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		ready = time.Now()
		return cmd
	}
	kill := func(cmd *exec.Cmd) time.Time {
		cmd.Process.Signal(syscall.SIGKILL)
		at := time.Now()
		cmd.Wait()
		return at
	}
	nas := newAcctNAS(fmt.Sprintf("127.0.0.1:%d", acctPort))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	id := func(s, k int) string { return fmt.Sprintf("k9-%d/%s", s, acctStatuses[k].name) }
	record := func(s, k int) []byte {
		return acctRequest(t, uint8(s*3+k), fmt.Sprintf("k9-%d", s), acctStatuses[k].value)
	}

	var kill1, ready1 time.Time
	cmd := start()
	// Starts with the cloud up: acknowledged by FreeRADIUS directly.
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Go(func() { nas.send(ctx, id(s, 0), record(s, 0)) })
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	if recs, err := x.fr[0].WaitAccounting(ctx, sessions); err != nil {
		t.Fatalf("cloud up: FreeRADIUS has %d of %d Starts: %v", len(recs), sessions, err)
	}

	// The WAN is cut (the relay swallows every byte; no RST). Interim-Update and Stop follow, 40 ms
	// between sessions: the first ones go direct and time out before the outage is detected.
	rl.Cut()
	cut := time.Now()
	for s := range sessions {
		wg.Go(func() {
			var inner sync.WaitGroup
			inner.Go(func() { nas.send(ctx, id(s, 1), record(s, 1)) })
			// At least 20 ms later, so that the NAS's own send order is certain.
			time.Sleep(time.Duration(20+s*7%280) * time.Millisecond)
			inner.Go(func() { nas.send(ctx, id(s, 2), record(s, 2)) })
			inner.Wait()
		})
		time.Sleep(40 * time.Millisecond)
		if s == sessions*2/3 {
			// Mid-outage, while records keep arriving: SIGKILL, then restart at once.
			kill1 = kill(cmd)
			t.Logf("kill -9 #1 at cut+%v", kill1.Sub(cut).Round(time.Millisecond))
			cmd = start()
			ready1 = ready
			t.Logf("restarted, listening %v after the kill", ready1.Sub(kill1).Round(time.Millisecond))
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("not every record was acknowledged within the bound")
	}
	t.Logf("all %d records acknowledged; WAN cut for %v so far", 3*sessions, time.Since(cut).Round(time.Millisecond))

	// Recovery, and a second SIGKILL while the spool is being replayed.
	rl.Restore()
	restored := time.Now()
	var atKill2 int
	for ctx.Err() == nil {
		recs, _ := x.fr[0].Accounting()
		if len(recs) >= sessions+sessions/2 {
			atKill2 = len(recs)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	kill(cmd)
	t.Logf("kill -9 #2 %v after the restore, FreeRADIUS holding %d of %d records", time.Since(restored).Round(time.Millisecond), atKill2, 3*sessions)
	start()
	recs, err := x.fr[0].WaitAccounting(ctx, 3*sessions)
	if err != nil {
		t.Fatalf("after recovery FreeRADIUS has %d of %d records: %v", len(recs), 3*sessions, err)
	}
	time.Sleep(2 * time.Second) // late duplicates, if any
	recs, _ = x.fr[0].Accounting()

	// Receipt order at the edge is the NAS's send order, except for a session whose Interim-Update
	// was sent but not yet acknowledged when the edge was killed and whose Stop was sent before the
	// restart: the two retransmissions reach the new process in either order. Such sessions are
	// counted, not judged.
	rank := map[string]int{"Start": 0, "Interim-Update": 1, "Stop": 2}
	seen := map[string]int{}
	order := map[int][]int{}
	for _, r := range recs {
		var s int
		if _, err := fmt.Sscanf(r.SessionID(), "k9-%d", &s); err != nil {
			t.Fatalf("unexpected record %v", r.Map)
		}
		seen[r.SessionID()+"/"+r.StatusType()]++
		order[s] = append(order[s], rank[r.StatusType()])
	}
	lost, dups, reordered, ambiguous := 0, 0, 0, 0
	for s := range sessions {
		for k := range acctStatuses {
			n := seen[id(s, k)]
			if _, acked := nas.times(id(s, k)); !acked.IsZero() && n == 0 {
				lost++
				t.Errorf("acknowledged record %s never delivered", id(s, k))
			}
			if n > 1 {
				dups += n - 1
			}
		}
		if ambiguousAtKill(nas, id(s, 1), id(s, 2), kill1, ready1) {
			ambiguous++
			continue
		}
		for i := 1; i < len(order[s]); i++ {
			if order[s][i] < order[s][i-1] {
				reordered++
				t.Errorf("session k9-%d delivered as %v (0 Start, 1 Interim-Update, 2 Stop)", s, order[s])
				break
			}
		}
	}
	t.Logf("%d sessions, %d records acknowledged: %d lost, %d sessions reordered (%d sessions straddling kill #1 not judged), %d duplicates (bound %d: the replay window at kill #2)",
		sessions, 3*sessions, lost, reordered, ambiguous, dups, window)
	if lost != 0 || reordered != 0 {
		t.Fatalf("%d lost, %d sessions reordered", lost, reordered)
	}
	if dups > window {
		t.Fatalf("%d duplicates, more than the %d records the replay can have in flight at a crash", dups, window)
	}
}

// ambiguousAtKill reports whether the edge may have received a session's Stop before its
// Interim-Update: the Interim-Update's first transmission went to the killed process or to nobody
// (sent before the restarted process listened, acknowledged only after the kill) and the
// Stop was sent before that acknowledgement, so its first transmission may have been received first.
func ambiguousAtKill(nas *acctNAS, interim, stop string, kill, up time.Time) bool {
	iSent, iAcked := nas.times(interim)
	sSent, _ := nas.times(stop)
	return iSent.Before(up) && iAcked.After(kill) && sSent.Before(iAcked)
}
