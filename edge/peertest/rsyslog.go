package peertest

// rsyslog (Debian 12: 8.2302) as a real syslog receiver.
//
// Quirks met here:
//   - `rsyslogd -n -f CONF -i PIDFILE` runs in the foreground with only the
//     modules the file loads: no imuxsock or imklog, so nothing of the
//     machine's own logging reaches the test's file.
//   - TLS (RFC 5425) needs the rsyslog-gnutls package (lmnsd_gtls.so). The
//     certificate files are global (DefaultNetstreamDriver*File); the TLS
//     input is imtcp with streamDriver.name="gtls", mode 1.
//   - mmpstrucdata parses RFC 5424 STRUCTURED-DATA into
//     $!rfc5424-sd!<sd-id>!<param>, lower-cased; of a repeated parameter
//     name it keeps one value, so the raw $structured-data is written too.
//   - Octet-counted framing (RFC 6587 §3.4.1) is accepted by imtcp without
//     configuration.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RsyslogOptions configures one rsyslogd.
type RsyslogOptions struct {
	// Dir holds the configuration, the pid file and the output. The TB form
	// defaults it to t.TempDir().
	Dir string
	// UDPAddr, TCPAddr and TLSAddr ("127.0.0.1:PORT") are the inputs to
	// open; at least one.
	UDPAddr, TCPAddr, TLSAddr string
	// CA, Cert and Key are PEM files for the TLS input (anonymous client
	// authentication: the client verifies the server, not the other way).
	CA, Cert, Key string
	StartTimeout  time.Duration // default 10 s
	// NetNS, when set, runs rsyslogd in that network namespace (see netns.go); the input
	// addresses are then that namespace's, and only TCPAddr is waited for.
	NetNS string
	// Config, when set, is the whole configuration file instead of the generated one (a relay
	// configured as documented, say); the addresses above then only say what to wait for, and
	// Records reads nothing unless Config writes messages.json into Dir.
	Config string
}

// Rsyslog is a running rsyslogd.
type Rsyslog struct {
	opts RsyslogOptions
	proc *process
	out  string
}

// SyslogRecord is one message as rsyslog parsed it.
type SyslogRecord struct {
	Transport      string                       `json:"transport"` // udp | tcp | tls: the input it came in on
	MsgID          string                       `json:"msgid"`
	AppName        string                       `json:"app"`
	Hostname       string                       `json:"hostname"`
	Facility       string                       `json:"facility"`
	Severity       string                       `json:"severity"`
	StructuredData string                       `json:"sd"`
	Msg            string                       `json:"msg"`
	SD             map[string]map[string]string `json:"rfc5424-sd"`
}

// StartRsyslog starts rsyslogd for a test and stops it when the test ends.
func StartRsyslog(tb testing.TB, o RsyslogOptions) *Rsyslog {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	return startForTest(tb, "rsyslogd", func(ctx context.Context) (*Rsyslog, error) {
		return StartRsyslogContext(ctx, o)
	})
}

// StartRsyslogContext starts rsyslogd and waits until its inputs listen. The caller must Stop it.
func StartRsyslogContext(ctx context.Context, o RsyslogOptions) (*Rsyslog, error) {
	if o.Dir == "" {
		return nil, errors.New("peertest: rsyslog: Dir required")
	}
	if o.UDPAddr == "" && o.TCPAddr == "" && o.TLSAddr == "" {
		return nil, errors.New("peertest: rsyslog: no input")
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.TLSAddr != "" {
		// rsyslog itself would only log that it cannot load the driver and never listen.
		if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
			return nil, fmt.Errorf("%w: rsyslog's gtls driver (install the Debian package \"rsyslog-gnutls\": apt-get install -y --no-install-recommends rsyslog-gnutls)", ErrMissingBinary)
		}
	}
	r := &Rsyslog{opts: o, out: filepath.Join(o.Dir, "messages.json")}
	conf := filepath.Join(o.Dir, "rsyslog.conf")
	text := o.Config
	if text == "" {
		text = r.config()
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("peertest: rsyslog: %w", err)
	}
	bin, args := "rsyslogd", []string{"-n", "-f", conf, "-i", filepath.Join(o.Dir, "rsyslogd.pid")}
	if o.NetNS != "" {
		if o.TCPAddr == "" {
			return nil, errors.New("peertest: rsyslog: a namespace needs TCPAddr to wait for")
		}
		var err error
		if bin, args, err = netnsCommand(o.NetNS, bin, args); err != nil {
			return nil, err
		}
	}
	p, err := startProcess("rsyslogd", filepath.Join(o.Dir, "rsyslogd.log"), nil, bin, args...)
	if err != nil {
		return nil, err
	}
	r.proc = p
	var checks []readyCheck
	if o.NetNS != "" {
		checks = append(checks, tcpAcceptingIn(o.NetNS, o.TCPAddr))
	} else {
		for _, a := range []string{o.TCPAddr, o.TLSAddr} {
			if a != "" {
				checks = append(checks, tcpAccepting(a))
			}
		}
		if o.UDPAddr != "" {
			checks = append(checks, udpBound(o.UDPAddr))
		}
	}
	if err := p.waitReady(ctx, o.StartTimeout, allReady(checks...)); err != nil {
		p.stop()
		return nil, startError(p, err)
	}
	return r, nil
}

func (r *Rsyslog) config() string {
	o := r.opts
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q", o.Dir)
	if o.TLSAddr != "" {
		fmt.Fprintf(&b, " DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q",
			o.CA, o.Cert, o.Key)
	}
	b.WriteString(")\n")
	b.WriteString("module(load=\"mmpstrucdata\")\n")
	input := func(typ, transport, addr, extra string) {
		host, port, _ := splitHostPort(addr)
		fmt.Fprintf(&b, "input(type=%q address=%q port=\"%d\" ruleset=%q%s)\n", typ, host, port, transport, extra)
		fmt.Fprintf(&b, "ruleset(name=%q) { set $!transport = %q; call store }\n", transport, transport)
	}
	if o.UDPAddr != "" {
		b.WriteString("module(load=\"imudp\")\n")
		input("imudp", "udp", o.UDPAddr, "")
	}
	if o.TCPAddr != "" || o.TLSAddr != "" {
		b.WriteString("module(load=\"imtcp\")\n")
	}
	if o.TCPAddr != "" {
		input("imtcp", "tcp", o.TCPAddr, "")
	}
	if o.TLSAddr != "" {
		input("imtcp", "tls", o.TLSAddr, ` streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon"`)
	}
	fmt.Fprintf(&b, `template(name="json" type="list") { property(name="$!all-json") constant(value="\n") }
ruleset(name="store") {
  action(type="mmpstrucdata")
  set $!msgid = $msgid;
  set $!app = $app-name;
  set $!hostname = $hostname;
  set $!facility = $syslogfacility-text;
  set $!severity = $syslogseverity-text;
  set $!sd = $structured-data;
  set $!msg = $msg;
  action(type="omfile" file=%q template="json" flushOnTXEnd="on" asyncWriting="off")
}
`, r.out)
	return b.String()
}

// Records returns what rsyslog wrote so far, in order; a line still being written is left out.
func (r *Rsyslog) Records() ([]SyslogRecord, error) {
	f, err := os.Open(r.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peertest: rsyslog: %w", err)
	}
	defer f.Close()
	var out []SyslogRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec SyslogRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue // a partial last line
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// WaitRecords polls Records until at least n arrived or ctx ends.
func (r *Rsyslog) WaitRecords(ctx context.Context, n int) ([]SyslogRecord, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		recs, err := r.Records()
		if err != nil || len(recs) >= n {
			return recs, err
		}
		select {
		case <-ctx.Done():
			return recs, fmt.Errorf("peertest: %d of %d syslog records: %w", len(recs), n, ctx.Err())
		case <-t.C:
		}
	}
}

// Stop stops rsyslogd (SIGTERM, then SIGKILL).
func (r *Rsyslog) Stop() error { return r.proc.stop() }

// LogTail is the end of rsyslogd's own output.
func (r *Rsyslog) LogTail(n int) string { return r.proc.logTail(n) }
