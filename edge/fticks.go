package edge

// F-Ticks lines to the federation as syslog messages (eduroam.f_ticks_syslog, docs/routing.md).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"mxedge/edge/config"
)

// fticksQueue is how many lines wait for the sender; more are dropped and counted.
const fticksQueue = 1024

// fticksSyslog sends F-Ticks lines, one RFC 5424 message each over UDP, to a syslog daemon
// (radsecproxy's FTicksSyslogFacility does the same through syslog(3)). The request path only
// queues a line (send never blocks); one goroutine (Run) writes them. The target is swapped on
// reload; nil drops nothing because no line is then queued (the routes get no Sink).
type fticksSyslog struct {
	ch       chan string
	target   atomic.Pointer[config.FTicksSyslog]
	hostname string
	log      *slog.Logger

	sent, dropped, failed atomic.Uint64
}

func newFTicksSyslog(log *slog.Logger) *fticksSyslog {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "-" // RFC 5424 §6.2.4 NILVALUE
	}
	return &fticksSyslog{ch: make(chan string, fticksQueue), hostname: h, log: log}
}

// sink returns the routes' F-Ticks Sink for the configuration b: nil without f_ticks_syslog.
func (f *fticksSyslog) sink(b *config.Built) func(string) {
	if b.FTicksSyslog == nil {
		return nil
	}
	return f.send
}

// use points the sender at b's target; start-up and a reload call it as they install b's routes.
func (f *fticksSyslog) use(b *config.Built) { f.target.Store(b.FTicksSyslog) }

// send queues line; with the queue full it is dropped and counted.
func (f *fticksSyslog) send(line string) {
	select {
	case f.ch <- line:
	default:
		f.dropped.Add(1)
	}
}

// Run writes queued lines until ctx ends, then what is still queued, and returns.
func (f *fticksSyslog) Run(ctx context.Context) {
	var conn net.Conn
	var cur config.FTicksSyslog
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	write := func(line string) {
		t := f.target.Load()
		if t == nil {
			f.dropped.Add(1) // f_ticks_syslog removed by a reload while the line waited
			return
		}
		if conn == nil || *t != cur {
			if conn != nil {
				conn.Close()
			}
			c, err := net.Dial("udp", t.Addr.String())
			if err != nil {
				conn = nil
				f.failed.Add(1)
				f.log.Warn("f-ticks line not sent", "peer", t.Addr.String(), "err", err)
				return
			}
			conn, cur = c, *t
		}
		if _, err := conn.Write(fticksMessage(cur.Facility, time.Now(), f.hostname, os.Getpid(), line)); err != nil {
			f.failed.Add(1)
			f.log.Warn("f-ticks line not sent", "peer", cur.Addr.String(), "err", err)
			return
		}
		f.sent.Add(1)
	}
	for {
		select {
		case line := <-f.ch:
			write(line)
		case <-ctx.Done():
			for {
				select {
				case line := <-f.ch:
					write(line)
				default:
					return
				}
			}
		}
	}
}

// fticksMessage is line as an RFC 5424 syslog message: severity informational (6), APP-NAME
// mxedge, MSGID F-TICKS, no structured data (§6), the line as MSG.
func fticksMessage(facility int, now time.Time, hostname string, pid int, line string) []byte {
	return fmt.Appendf(nil, "<%d>1 %s %s mxedge %d F-TICKS - %s", facility*8+6,
		now.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), hostname, pid, line)
}
