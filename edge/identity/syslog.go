package identity

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// RFC 5424 constants.
const (
	// SyslogSDID is the structured-data element of every message. 32473 is the enterprise number
	// RFC 5612 reserves for documentation; RFC 5424 §7.2.2 asks for the sender's own.
	SyslogSDID = "identity@32473"
	// DefaultFacility is 10, security/authorization (RFC 5424 §6.2.1).
	DefaultFacility = 10
	severityInfo    = 6
	// maxUDPMessage keeps a datagram within what every IPv4 path carries unfragmented... enough:
	// RFC 5426 §3.2 requires receivers to accept 480 octets and suggests 2048.
	maxUDPMessage = 2048
)

// SyslogOptions configure a syslog sink.
type SyslogOptions struct {
	Address   string      // host:port
	Transport string      // udp (RFC 5426) | tcp (RFC 6587 octet counting) | tls (RFC 5425)
	TLS       *tls.Config // tls only; verification is never turned off
	Facility  int         // 0..23, default DefaultFacility (the zero value means the default)
	Hostname  string      // HOSTNAME field; "" the system's
	AppName   string      // APP-NAME field, default "mxedge"
}

// Validate checks the options.
func (o *SyslogOptions) Validate() error {
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return fmt.Errorf("identity: syslog address %q: %w", o.Address, err)
	}
	switch o.Transport {
	case "udp", "tcp":
	case "tls":
		if o.TLS != nil && o.TLS.InsecureSkipVerify {
			return errors.New("identity: syslog: server verification cannot be turned off")
		}
	default:
		return fmt.Errorf("identity: syslog transport %q: want udp, tcp or tls", o.Transport)
	}
	if o.Facility < 0 || o.Facility > 23 {
		return fmt.Errorf("identity: syslog facility %d: want 0..23", o.Facility)
	}
	return nil
}

type syslogDriver struct {
	o    SyslogOptions
	conn net.Conn
}

func newSyslog(o SyslogOptions) *syslogDriver {
	if o.Facility == 0 {
		o.Facility = DefaultFacility
	}
	if o.AppName == "" {
		o.AppName = "mxedge"
	}
	if o.Hostname == "" {
		o.Hostname = hostname()
	}
	return &syslogDriver{o: o}
}

func (d *syslogDriver) dial(ctx context.Context) error {
	if d.conn != nil {
		return nil
	}
	var err error
	switch d.o.Transport {
	case "tls":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if d.o.TLS != nil {
			cfg = d.o.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(d.o.Address)
		}
		td := &tls.Dialer{Config: cfg}
		d.conn, err = td.DialContext(ctx, "tcp", d.o.Address)
	default:
		var nd net.Dialer
		d.conn, err = nd.DialContext(ctx, d.o.Transport, d.o.Address)
	}
	if err != nil {
		return fmt.Errorf("identity: syslog: %w", err)
	}
	return nil
}

func (d *syslogDriver) deliver(ctx context.Context, items []item) ([]item, error) {
	if err := d.dial(ctx); err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(5 * time.Second)
	}
	_ = d.conn.SetWriteDeadline(dl)
	var buf []byte
	for i, it := range items {
		var ev Event
		if err := json.Unmarshal(it.payload, &ev); err != nil {
			return items[:i], fmt.Errorf("identity: syslog: %w", err)
		}
		msg := FormatSyslog(&ev, d.o.Facility, d.o.Hostname, d.o.AppName)
		if d.o.Transport == "udp" {
			if len(msg) > maxUDPMessage {
				msg = msg[:maxUDPMessage] // RFC 5426 §3.2: a receiver may truncate; we do it ourselves
			}
			if _, err := d.conn.Write(msg); err != nil {
				d.reset()
				return items[:i], fmt.Errorf("identity: syslog: %w", err)
			}
			continue
		}
		// RFC 6587 §3.4.1 and RFC 5425 §4.3: MSG-LEN SP SYSLOG-MSG.
		buf = strconv.AppendInt(buf, int64(len(msg)), 10)
		buf = append(buf, ' ')
		buf = append(buf, msg...)
	}
	if d.o.Transport != "udp" {
		if _, err := d.conn.Write(buf); err != nil {
			d.reset()
			return nil, fmt.Errorf("identity: syslog: %w", err)
		}
	}
	return items, nil
}

func (d *syslogDriver) reset() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

func (d *syslogDriver) close() error {
	d.reset()
	return nil
}

// FormatSyslog renders an event as an RFC 5424 message: MSGID the event type, one SD-ELEMENT
// SyslogSDID with the event's fields as SD-PARAMs (ip repeated per address, RFC 5424 §6.3.3 lets
// a name repeat), and a short human-readable MSG.
func FormatSyslog(ev *Event, facility int, host, app string) []byte {
	b := make([]byte, 0, 512)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility*8+severityInfo), 10)
	b = append(b, ">1 "...)
	b = ev.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, header(host, 255)...)
	b = append(b, ' ')
	b = append(b, header(app, 48)...)
	b = append(b, " - "...)
	b = append(b, header(ev.Type, 32)...)
	b = append(b, " ["...)
	b = append(b, SyslogSDID...)
	param := func(name, v string) {
		if v == "" {
			return
		}
		b = append(b, ' ')
		b = append(b, name...)
		b = append(b, `="`...)
		b = appendParamValue(b, v)
		b = append(b, '"')
	}
	param("type", ev.Type)
	param("reason", ev.Reason)
	param("user", ev.User)
	param("domain", ev.Domain)
	for _, ip := range ev.IPAddresses {
		param("ip", ip)
	}
	param("mac", ev.MAC)
	param("nas", ev.NAS)
	param("nas_address", ev.NASAddress)
	param("nas_port", ev.NASPort)
	param("ssid", ev.SSID)
	param("site", ev.Site)
	param("vlan", ev.VLAN)
	param("session_id", ev.SessionID)
	param("method", ev.Method)
	param("authorized_by", ev.AuthorizedBy)
	param("id", ev.ID)
	b = append(b, "] "...)
	b = append(b, ev.Type...)
	b = append(b, " user="...)
	b = append(b, ev.User...)
	b = append(b, " domain="...)
	b = append(b, ev.Domain...)
	b = append(b, " ip="...)
	b = append(b, strings.Join(ev.IPAddresses, ",")...)
	return b
}

// appendParamValue escapes '"', '\' and ']' (RFC 5424 §6.3.3).
func appendParamValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// header makes a header field PRINTUSASCII without spaces, at most n octets, "-" when empty
// (RFC 5424 §6).
func header(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		} else {
			out = append(out, '_')
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}
