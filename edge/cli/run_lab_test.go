package cli

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/install"
)

// buildMxedge builds the real binary, as `make build` does, into a temporary directory.
func buildMxedge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// bannerCommand is one command the lab banner prints, with its comment.
type bannerCommand struct{ cmd, comment string }

// bannerCommands returns the commands of the lab banner as a shell would read them: indented lines,
// continuation lines (ending in a backslash) joined, the trailing "# comment" split off.
func bannerCommands(banner string) []bannerCommand {
	var out []bannerCommand
	var cur string
	for _, l := range strings.Split(banner, "\n") {
		if !strings.HasPrefix(l, "  ") && cur == "" {
			continue
		}
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`)
			continue
		}
		l = cur + l
		cur = ""
		cmd, comment, _ := strings.Cut(l, " # ")
		out = append(out, bannerCommand{strings.TrimSpace(cmd), strings.TrimSpace(comment)})
	}
	return out
}

// TestQuickStart runs what the README's quick start says, `mxedge run --dev` (here on free ports,
// so a RADIUS server on the machine cannot get in the way), then every command its banner prints,
// exactly as printed, through a shell: each must run (no "mxedge: not found") and show what its
// comment promises.
func TestQuickStart(t *testing.T) {
	peertestRequire(t, "radtest", "radclient")
	bin := buildMxedge(t)
	cmd := exec.Command(bin, "run", "--dev", "--free-ports")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "mxedge started") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	banner := out.String()
	_, try, ok := strings.Cut(banner, "Try (freeradius-utils):\n")
	if !ok {
		t.Fatalf("no banner:\n%s", banner)
	}
	try, _, _ = strings.Cut(try, "Stop with Ctrl-C.")
	if strings.Contains(try, ":1812 ") || strings.Contains(try, "\n  mxedge ") {
		t.Errorf("banner names the default port or a bare mxedge with --free-ports:\n%s", try)
	}
	// What each command must print, by its comment; every printed command is listed here.
	want := map[string]string{
		"PAP: Access-Accept, VLAN 300":           "Received Access-Accept",
		"Access-Reject":                          "Received Access-Reject",
		"MAB: Access-Accept, VLAN 41":            `Tunnel-Private-Group-Id:0 = "41"`,
		"Status-Server":                          "Received Access-Accept",
		"Accounting-Response":                    "Received Accounting-Response",
		"MAB clients learned from the lab cloud": "02:00:00:00:00:01",
		"EAP-TLS: VLAN 300, MPPE keys":           `"300"`,
		"eduroam visitor: Access-Accept from the lab national server, Operator-Name added":                                        `Reply-Message = "lab national server: Operator-Name 1lab.example"`,
		"mode, upstream, cache, counters":                                                                                         "lab-cloud",
		"Disconnect-ACK from the lab's simulated NAS, through mxedge":                                                             "Received Disconnect-ACK",
		"CoA-NAK, Error-Cause 503 (the NAS has no such session)":                                                                  "Error-Cause = Session-Context-Not-Found",
		"the NAC event stream (Ctrl-C ends it)":                                                                                   "ACCEPT",
		"cut: MAB 02-00-00-00-00-01 keeps VLAN 41 from the cache, PAP gets no answer (a switch falls back to its local accounts)": "",
		"restore: failback after 3 healthy Status-Server probes":                                                                  "",
	}
	cmds := bannerCommands(try)
	if len(cmds) != len(want) {
		t.Fatalf("banner prints %d commands, the test knows %d:\n%s", len(cmds), len(want), try)
	}
	for _, c := range cmds {
		w, ok := want[c.comment]
		if !ok {
			t.Errorf("unknown banner command %q (# %s)", c.cmd, c.comment)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		follow := strings.Contains(c.cmd, "--follow")
		if follow {
			ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		}
		sh := exec.CommandContext(ctx, "sh", "-c", c.cmd)
		// The timeout ends the shell and what it started (a pipeline, the --follow stream).
		sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		sh.Cancel = func() error { return syscall.Kill(-sh.Process.Pid, syscall.SIGTERM) }
		sh.WaitDelay = 2 * time.Second
		got, err := sh.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		switch {
		case follow && ctx.Err() != nil:
			err = nil // --follow runs until interrupted
		case c.comment == "Access-Reject" && errors.As(err, &ee) && ee.ExitCode() == 1:
			err = nil // radtest exits 1 when it did not get an Access-Accept
		case strings.HasPrefix(c.comment, "CoA-NAK") && errors.As(err, &ee) && ee.ExitCode() == 1:
			err = nil // radclient exits 1 when the answer is a NAK
		}
		if err != nil || !strings.Contains(string(got), w) {
			t.Errorf("%s\n  (%s): err %v, want %q in:\n%s", c.cmd, c.comment, err, w, got)
		}
	}
}

// TestLabPortTaken: with a port of the lab taken (as by a FreeRADIUS on the same machine) the lab
// exits 1 at once, naming the port, the process that holds it and the flags that pick others, and
// prints no banner.
func TestLabPortTaken(t *testing.T) {
	bin := buildMxedge(t)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	holder := strings.TrimSpace(string(comm)) + " (pid " + strconv.Itoa(os.Getpid()) + ")"
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"auth", []string{"--auth-listen", udp.LocalAddr().String(), "--acct-listen", "127.0.0.1:0"},
			[]string{"RADIUS authentication port " + udp.LocalAddr().String() + "/udp is already in use by " + holder,
				bin + " run --dev --auth-listen 127.0.0.1:", bin + " run --dev --free-ports"}},
		{"acct", []string{"--auth-listen", "127.0.0.1:0", "--acct-listen", udp.LocalAddr().String()},
			[]string{"RADIUS accounting port " + udp.LocalAddr().String() + "/udp is already in use by " + holder}},
		{"cloud", []string{"--auth-listen", "127.0.0.1:0", "--acct-listen", "127.0.0.1:0", "--cloud-listen", tcp.Addr().String()},
			[]string{"lab cloud RadSec port " + tcp.Addr().String() + "/tcp is already in use by " + holder, "--cloud-listen 127.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			out, err := exec.CommandContext(ctx, bin, append([]string{"run", "--dev"}, tc.args...)...).CombinedOutput()
			took := time.Since(start)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v (want status 1) after %v\n%s", err, took, out)
			}
			if took > 5*time.Second {
				t.Errorf("took %v to fail", took)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "Try (freeradius-utils)") {
				t.Errorf("banner printed although the lab cannot start:\n%s", out)
			}
		})
	}
}

// TestLabFlagsNeedDev: the lab's address flags are refused without --dev, and with a malformed
// address, before anything starts.
func TestLabFlagsNeedDev(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--free-ports"},
		{"run", "--auth-listen", "127.0.0.1:11812"},
		{"run", "--dev", "--auth-listen", "1812"},
		{"run", "--dev", "--free-ports", "--acct-listen", "127.0.0.1:11813"},
	} {
		if _, err := execute(t, args...); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestRunNotConfigured: on the packaged default run starts nothing, tells systemd "not configured:
// …" in STATUS= and exits 78; --check-configured (the unit's ExecCondition=) says the same without
// the status line, and exits 0 on a configuration that serves somebody.
func TestRunNotConfigured(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mxedge.yaml")
	if err := os.WriteFile(path, install.DefaultConfig, 0o640); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	want := "not configured: run `mxedge register` or edit " + path
	for _, args := range [][]string{{"run", "--config", path}, {"run", "--check-configured", "--config", path}} {
		_, err := execute(t, args...)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != ExitNotConfigured || err.Error() != want || !errors.Is(err, config.ErrNotConfigured) {
			t.Fatalf("%v: %v, want exit %d %q", args, err, ExitNotConfigured, want)
		}
	}
	// One STATUS= datagram: from run, not from the condition.
	nconn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := nconn.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "STATUS="+want {
		t.Fatalf("notify: %v %q, want STATUS=%s", err, buf[:n], want)
	}
	nconn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := nconn.ReadFromUnix(buf); err == nil {
		t.Errorf("second datagram %q: --check-configured must not set the status", buf[:n])
	}
	if _, err := execute(t, "run", "--check-configured", "--config", labConfig(t)); err != nil {
		t.Errorf("configured lab: %v", err)
	}
}
