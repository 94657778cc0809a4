// Package notify owns mxedge's conversation with systemd (sd_notify(3), through go-systemd's daemon
// package): readiness, a one-line status for `systemctl status`, reload and stop notifications, and
// the watchdog keep-alive that stops as soon as the serving loop stops making progress, so systemd
// kills and restarts a wedged edge (WatchdogSec= in the unit, Restart=on-failure).
//
// Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op, so callers never branch on it.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify(3) messages to the service manager. The zero value is not usable; call
// New. A Notifier is safe for concurrent use.
type Notifier struct {
	logger   *slog.Logger
	enabled  bool
	watchdog time.Duration
}

// New reads the service manager's environment once: NOTIFY_SOCKET (notifications are sent only
// when it is set) and WATCHDOG_USEC/WATCHDOG_PID (the watchdog runs only when they name this
// process). A nil logger discards. A malformed WATCHDOG_USEC is logged and disables the watchdog:
// refusing to start over it would be worse than not pinging.
func New(logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{logger: logger, enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("watchdog disabled: bad WATCHDOG_USEC", "err", err)
	}
	n.watchdog = wd
	return n
}

// Enabled reports whether a service manager is listening (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return n.enabled }

// Watchdog returns the watchdog timeout systemd enforces (WatchdogSec=), 0 when there is none.
func (n *Notifier) Watchdog() time.Duration { return n.watchdog }

// Ready tells systemd that startup finished (every listener bound, the cache open) or that a reload
// finished. Type=notify units are "activating" until this arrives.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Reloading tells systemd a configuration reload started; Ready ends it. MONOTONIC_USEC lets
// systemd ≥ 253 (Type=notify-reload) match the reload to the request; older versions ignore it.
func (n *Notifier) Reloading() error {
	return n.send(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Stopping tells systemd that shutdown started, so it waits instead of reporting a crash.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Status sets the one line `systemctl status` shows ("proxying to nac1 (up, 12 ms), cache 12,345
// clients"). Newlines would start a new assignment in the datagram, so they become spaces.
func (n *Notifier) Status(line string) error {
	line = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, line)
	return n.send("STATUS=" + line)
}

// ErrNotify wraps failures to reach the service manager's socket.
var ErrNotify = errors.New("notify: sd_notify failed")

func (n *Notifier) send(state string) error {
	if !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotify, firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// RunWatchdog sends WATCHDOG=1 every half watchdog timeout (sd_watchdog_enabled(3) recommends
// half) for as long as alive returns true; while alive returns false it withholds the pings, so a
// wedged serving loop lets the timeout expire and systemd restarts the service. alive should report
// whether the serving loop made progress recently; it is called once per interval from this
// goroutine. RunWatchdog returns nil when ctx is cancelled, or at once when there is no watchdog.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func() bool) error {
	if !n.enabled || n.watchdog <= 0 {
		return nil
	}
	interval := n.watchdog / 2
	t := time.NewTicker(interval)
	defer t.Stop()
	withheld := false
	for {
		if alive() {
			if withheld {
				n.logger.Info("watchdog pings resumed: serving loop is making progress again")
				withheld = false
			}
			if err := n.send(daemon.SdNotifyWatchdog); err != nil {
				n.logger.Warn("watchdog ping failed", "err", err)
			}
		} else if !withheld {
			n.logger.Error("watchdog pings withheld: serving loop is stalled; systemd will restart the service",
				"dur", n.watchdog)
			withheld = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// UnderJournal reports whether stderr is connected to the systemd journal: JOURNAL_STREAM names the
// device and inode of the journal stream (systemd.exec(5)), and it must match stderr itself, not an
// inherited variable after stderr was redirected. Under the journal, log lines should carry no
// timestamp (journald adds one) and a <N> syslog priority prefix (sd-daemon(3)).
func UnderJournal() bool {
	return journalStream(os.Getenv("JOURNAL_STREAM"), int(os.Stderr.Fd()))
}

func journalStream(env string, fd int) bool {
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return false
	}
	return dev == fmt.Sprint(st.Dev) && ino == fmt.Sprint(st.Ino)
}
