package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// manager is the service manager's end of NOTIFY_SOCKET: a real unixgram socket, as systemd creates.
type manager struct {
	t    testing.TB
	conn *net.UnixConn
}

// newManager binds a notify socket and points NOTIFY_SOCKET (and, when watchdog > 0, WATCHDOG_USEC
// and WATCHDOG_PID) at it for the duration of the test.
func newManager(t *testing.T, watchdog time.Duration) *manager {
	t.Helper()
	// Short path: sun_path holds 108 bytes and t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "ntfy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", fmt.Sprint(watchdog.Microseconds()))
		t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
		t.Setenv("WATCHDOG_PID", "")
	}
	return &manager{t: t, conn: conn}
}

// next returns the next datagram, failing after wait.
func (m *manager) next(wait time.Duration) string {
	m.t.Helper()
	s, ok := m.recv(wait)
	if !ok {
		m.t.Fatalf("no datagram within %v", wait)
	}
	return s
}

func (m *manager) recv(wait time.Duration) (string, bool) {
	buf := make([]byte, 4096)
	m.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := m.conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", false
		}
		m.t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n]), true
}

// count reads datagrams for d and counts them by content; every one must be want.
func (m *manager) count(d time.Duration, want string) int {
	m.t.Helper()
	end := time.Now().Add(d)
	n := 0
	for {
		left := time.Until(end)
		if left <= 0 {
			return n
		}
		s, ok := m.recv(left)
		if !ok {
			return n
		}
		if s != want {
			m.t.Fatalf("datagram %q, want %q", s, want)
		}
		n++
	}
}

func TestLifecycleDatagrams(t *testing.T) {
	m := newManager(t, 0)
	n := New(nil)
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	tests := []struct {
		name string
		call func() error
		want string // exact datagram, or prefix when it ends in "*"
	}{
		{"ready", n.Ready, "READY=1"},
		{"status", func() error { return n.Status("proxying to nac1 (up, 12 ms), cache 12,345 clients") },
			"STATUS=proxying to nac1 (up, 12 ms), cache 12,345 clients"},
		{"status newline", func() error { return n.Status("SURVIVABILITY: upstream down 3m12s\n41 local decisions") },
			"STATUS=SURVIVABILITY: upstream down 3m12s 41 local decisions"},
		{"reloading", n.Reloading, "RELOADING=1\nMONOTONIC_USEC=*"},
		{"ready after reload", n.Ready, "READY=1"},
		{"stopping", n.Stopping, "STOPPING=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			got := m.next(2 * time.Second)
			if p, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(got, p) || len(got) == len(p) {
					t.Errorf("datagram %q, want %q", got, tc.want)
				}
			} else if got != tc.want {
				t.Errorf("datagram %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWatchdogStopsWhenWedged(t *testing.T) {
	const timeout = 200 * time.Millisecond // pings every 100 ms
	m := newManager(t, timeout)
	n := New(nil)
	if n.Watchdog() != timeout {
		t.Fatalf("Watchdog() = %v, want %v", n.Watchdog(), timeout)
	}
	var serving atomic.Bool
	serving.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunWatchdog(ctx, serving.Load) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunWatchdog: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("RunWatchdog did not return after cancel")
		}
	}()

	// Serving: a ping at once, then one per half timeout (about 6 in 550 ms; allow for a slow CI).
	if got := m.count(550*time.Millisecond, "WATCHDOG=1"); got < 3 {
		t.Fatalf("%d pings in 550ms while serving, want ≥ 3", got)
	}
	// Wedged: after at most one ping already in flight, silence for several timeouts.
	serving.Store(false)
	m.count(150*time.Millisecond, "WATCHDOG=1")
	if got := m.count(3*timeout, "WATCHDOG=1"); got != 0 {
		t.Fatalf("%d pings while the serving loop was wedged, want 0", got)
	}
	// Recovered: pings resume.
	serving.Store(true)
	if got := m.count(350*time.Millisecond, "WATCHDOG=1"); got < 1 {
		t.Fatalf("no ping after the serving loop recovered")
	}
}

func TestDisabled(t *testing.T) {
	tests := []struct {
		name   string
		socket string
		usec   string
		pid    string
	}{
		{"no socket", "", "", ""},
		{"watchdog for another pid", "/nonexistent/notify.sock", "100000", "1"},
		{"bad WATCHDOG_USEC", "/nonexistent/notify.sock", "soon", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			n := New(nil)
			if n.Watchdog() != 0 {
				t.Errorf("Watchdog() = %v, want 0", n.Watchdog())
			}
			// No watchdog: returns at once, does not call alive.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.RunWatchdog(ctx, func() bool { t.Error("alive called"); return true }); err != nil {
				t.Error(err)
			}
			if ctx.Err() != nil {
				t.Error("RunWatchdog blocked with no watchdog")
			}
			if tc.socket == "" {
				if err := n.Ready(); err != nil {
					t.Errorf("Ready without a manager: %v", err)
				}
			}
		})
	}
}

func TestSendFailure(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if err := New(nil).Ready(); !errors.Is(err, ErrNotify) {
		t.Errorf("Ready to a missing socket: %v, want ErrNotify", err)
	}
}

func TestJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  string
		want bool
	}{
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false}, // inherited, stderr since redirected
		{"", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		if got := journalStream(tc.env, int(f.Fd())); got != tc.want {
			t.Errorf("journalStream(%q) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
