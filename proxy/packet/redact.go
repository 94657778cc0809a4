package packet

import (
	"log/slog"
	"strconv"
)

// Redacted is a packet as a debug log shows it: every attribute by its dictionary name, in wire
// order, radclient-style (`User-Name = "bob"`), with what is hidden by or derived from the shared
// secret replaced by its length: every `encrypt=` attribute (User-Password, Tunnel-Password,
// MS-MPPE keys, Aruba-MPSK-Passphrase, …; Dictionary.Encrypted), CHAP-Password (RFC 2865 §5.3),
// and Message-Authenticator (RFC 3579 §3.2). EAP-Message is shown by length (TLS records are
// noise in a log line). It implements slog.LogValuer, so it is rendered only when a handler
// writes the line.
type Redacted struct {
	Dict   *Dictionary // nil: Builtin
	Packet Packet
}

// LogValue implements slog.LogValuer.
func (r Redacted) LogValue() slog.Value {
	d := r.Dict
	if d == nil {
		d = Builtin()
	}
	return slog.StringValue(string(d.AppendRedacted(nil, r.Packet)))
}

// AppendRedacted appends p's attributes as Redacted renders them, separated by ", ".
func (d *Dictionary) AppendRedacted(dst []byte, p Packet) []byte {
	n := 0
	add := func(vendor uint32, code uint8, v []byte) {
		if n > 0 {
			dst = append(dst, ", "...)
		}
		n++
		dst = d.appendRedactedAttr(dst, vendor, code, v)
	}
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return dst
		}
		if typ == AttrVendorSpecific && SplitVSA(v, func(s VSA) { add(s.Vendor, s.Type, s.Value) }) {
			continue
		}
		add(0, typ, v)
	}
}

func (d *Dictionary) appendRedactedAttr(dst []byte, vendor uint32, code uint8, v []byte) []byte {
	hidden := vendor == 0 && (code == AttrCHAPPassword || code == AttrMessageAuthenticator || code == AttrEAPMessage)
	if a, ok := d.Attr(vendor, code); ok && a.Encrypt != SchemeNone {
		hidden = true
	}
	if !hidden {
		return d.AppendText(dst, vendor, code, v)
	}
	dst = append(dst, d.Name(vendor, code)...)
	dst = append(dst, " = <"...)
	dst = strconv.AppendInt(dst, int64(len(v)), 10)
	word := " octets hidden>"
	if code == AttrEAPMessage && vendor == 0 {
		word = " octets>"
	}
	return append(dst, word...)
}
