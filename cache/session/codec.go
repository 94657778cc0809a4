package session

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Record codec. The first octet is the codec version; decodeRecord dispatches on it so a record
// written by an older mxedge stays readable after the layout changes (a new layout gets a new
// version and decodeV<n>; testdata/record-v1.hex is a v1 record checked in once).
//
// Version 1 layout (integers big-endian; uvarint = encoding/binary; str = uvarint length + octets):
//
//	version    1 octet = 1
//	flags      1 octet: bit 0 MAC, 1 NAS-Port, 2 Framed-IP, 3 Framed-IPv6, 4 Framed-IPv6-Prefix
//	state, decider, reconcile  1 octet each
//	id         8 octets
//	strings    str × 13: nas, nas address, vendor, site, nas-port-id, called-station-id, ssid,
//	           calling-station-id, user-name, method, vlan, acct-session-id, acct-multi-session-id
//	class      str
//	mac        6 octets        (flag 0)
//	nas-port   4 octets        (flag 1)
//	framed-ip  4 octets        (flag 2)
//	framed-ip6 16 octets       (flag 3)
//	prefix     1 octet length + 16 octets (flag 4)
//	times      8 octets × 7, Unix nanoseconds, 0 = unset: authorized, started, updated, stopped,
//	           expires, reconcile-at
//	uvarint × 6: interim seconds, input octets, output octets, session time, terminate cause,
//	           reconcile attempts
//
// Version 2 (testdata/record-v2.hex) is version 1's layout with the version octet 2, followed by
// the replication fields of a cluster member (docs/cluster.md):
//
//	origin       str
//	origin id    8 octets
//	edge         str
//	admitted by  str
//	stamp        8 octets, Unix nanoseconds, 0 = unset
//
// A record without replication fields is still written as version 1, so an edge outside a
// cluster writes what an older mxedge reads.
const (
	codecV1 = 1
	codecV2 = 2

	flagMAC    = 1 << 0
	flagPort   = 1 << 1
	flagIP4    = 1 << 2
	flagIP6    = 1 << 3
	flagPrefix = 1 << 4
	flagsKnown = flagMAC | flagPort | flagIP4 | flagIP6 | flagPrefix

	// maxEncodedLen bounds what the decoder accepts: 14 strings of 253 octets and the fixed part.
	maxEncodedLen = 8 << 10
)

func (r *Record) strings() [13]*string {
	return [13]*string{&r.NAS, &r.NASAddr, &r.Vendor, &r.Site, &r.NASPortID, &r.CalledStationID, &r.SSID,
		&r.CallingStationID, &r.UserName, &r.Method, &r.VLAN, &r.AcctSessionID, &r.AcctMultiSessionID}
}

func (r *Record) times() [6]*time.Time {
	return [6]*time.Time{&r.Authorized, &r.Started, &r.Updated, &r.Stopped, &r.Expires, &r.ReconcileAt}
}

// appendRecord appends the current-version encoding of a valid record to b.
func appendRecord(b []byte, r *Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	var flags byte
	var mac [macLen]byte
	if r.MAC != "" {
		flags |= flagMAC
		mac, _ = parseMAC(r.MAC)
	}
	if r.HasNASPort {
		flags |= flagPort
	}
	if r.FramedIP.IsValid() {
		flags |= flagIP4
	}
	if r.FramedIPv6.IsValid() {
		flags |= flagIP6
	}
	if r.FramedIPv6Prefix.IsValid() {
		flags |= flagPrefix
	}
	version := byte(codecV1)
	if r.replicated() {
		version = codecV2
	}
	b = append(b, version, flags, byte(r.State), byte(r.Decider), byte(r.Reconcile))
	b = binary.BigEndian.AppendUint64(b, r.ID)
	for _, s := range r.strings() {
		b = binary.AppendUvarint(b, uint64(len(*s)))
		b = append(b, *s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Class)))
	b = append(b, r.Class...)
	if flags&flagMAC != 0 {
		b = append(b, mac[:]...)
	}
	if flags&flagPort != 0 {
		b = binary.BigEndian.AppendUint32(b, r.NASPort)
	}
	if flags&flagIP4 != 0 {
		a := r.FramedIP.As4()
		b = append(b, a[:]...)
	}
	if flags&flagIP6 != 0 {
		a := r.FramedIPv6.As16()
		b = append(b, a[:]...)
	}
	if flags&flagPrefix != 0 {
		a := r.FramedIPv6Prefix.Addr().As16()
		b = append(b, byte(r.FramedIPv6Prefix.Bits()))
		b = append(b, a[:]...)
	}
	for _, t := range r.times() {
		b = binary.BigEndian.AppendUint64(b, uint64(timeToNanos(*t)))
	}
	for _, v := range []uint64{uint64(r.Interim / time.Second), r.InputOctets, r.OutputOctets,
		uint64(r.SessionTime), uint64(r.TerminateCause), uint64(r.ReconcileAttempts)} {
		b = binary.AppendUvarint(b, v)
	}
	if version == codecV2 {
		b = appendStr(b, r.Origin)
		b = binary.BigEndian.AppendUint64(b, r.OriginID)
		b = appendStr(b, r.Edge)
		b = appendStr(b, r.AdmittedBy)
		b = binary.BigEndian.AppendUint64(b, uint64(timeToNanos(r.Stamp)))
	}
	return b, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord decodes any known codec version and validates the result, so a decoded record
// always re-encodes. The input is not retained (bbolt values live only inside a transaction).
func decodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("%w: empty", ErrBadRecord)
	}
	if len(b) > maxEncodedLen {
		return Record{}, fmt.Errorf("%w: %d octets", ErrBadRecord, len(b))
	}
	switch b[0] {
	case codecV1, codecV2:
		return decodeV1(b[1:], b[0] == codecV2)
	}
	return Record{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
}

// decodeV1 decodes version 1's layout, and with v2 the replication fields that follow it.
func decodeV1(b []byte, v2 bool) (Record, error) {
	d := decoder{b: b}
	var r Record
	flags := d.byte()
	if d.err == nil && flags&^flagsKnown != 0 {
		return Record{}, fmt.Errorf("%w: unknown flags %#x", ErrBadRecord, flags)
	}
	r.State, r.Decider, r.Reconcile = State(d.byte()), Decider(d.byte()), Reconcile(d.byte())
	r.ID = d.uint64()
	for _, s := range r.strings() {
		*s = string(d.bytes(int(d.uvarint(maxStringLen))))
	}
	if c := d.bytes(int(d.uvarint(maxStringLen))); len(c) > 0 {
		r.Class = append([]byte(nil), c...)
	}
	if flags&flagMAC != 0 {
		var m [macLen]byte
		copy(m[:], d.bytes(macLen))
		r.MAC = formatMAC(m)
	}
	if flags&flagPort != 0 {
		r.NASPort, r.HasNASPort = d.uint32(), true
	}
	if flags&flagIP4 != 0 {
		var a [4]byte
		copy(a[:], d.bytes(4))
		r.FramedIP = netip.AddrFrom4(a)
	}
	if flags&flagIP6 != 0 {
		var a [16]byte
		copy(a[:], d.bytes(16))
		r.FramedIPv6 = netip.AddrFrom16(a)
	}
	if flags&flagPrefix != 0 {
		bits := int(d.byte())
		var a [16]byte
		copy(a[:], d.bytes(16))
		if d.err == nil {
			if bits > 128 {
				return Record{}, fmt.Errorf("%w: prefix length %d", ErrBadRecord, bits)
			}
			r.FramedIPv6Prefix = netip.PrefixFrom(netip.AddrFrom16(a), bits)
		}
	}
	for _, t := range r.times() {
		*t = nanosToTime(int64(d.uint64()))
	}
	r.Interim = time.Duration(d.uvarint(1<<32-1)) * time.Second
	r.InputOctets = d.uvarint(1<<64 - 1)
	r.OutputOctets = d.uvarint(1<<64 - 1)
	r.SessionTime = uint32(d.uvarint(1<<32 - 1))
	r.TerminateCause = uint32(d.uvarint(1<<32 - 1))
	r.ReconcileAttempts = uint32(d.uvarint(1<<32 - 1))
	if v2 {
		r.Origin = string(d.bytes(int(d.uvarint(maxStringLen))))
		r.OriginID = d.uint64()
		r.Edge = string(d.bytes(int(d.uvarint(maxStringLen))))
		r.AdmittedBy = string(d.bytes(int(d.uvarint(maxStringLen))))
		r.Stamp = nanosToTime(int64(d.uint64()))
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing octets", ErrBadRecord, len(d.b))
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// decoder reads fields and remembers the first error, so decodeV1 reads like the layout table.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrBadRecord, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	v := d.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail("field")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// uvarint reads a uvarint and fails when it exceeds limit.
func (d *decoder) uvarint(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	if v > limit {
		d.err = fmt.Errorf("%w: value %d above limit %d", ErrBadRecord, v, limit)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// timeToNanos maps the zero time to 0 so "unset" survives a round trip.
func timeToNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosToTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
