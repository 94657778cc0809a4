package cache

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Record codec. The first octet is the codec version; decodeRecord
// dispatches on it so that a record written by an older mxedge stays
// readable after the layout changes: a new layout gets a new version number
// and a new decodeV<n>, and the old decoder is kept (testdata/record-v1.hex
// is a v1 record checked in once and never regenerated).
//
// Version 1 layout (all integers big-endian, uvarint = encoding/binary):
//
//	version   1 octet  = 1
//	method    1 octet  Method
//	flags     1 octet  bit 0: MAC present
//	mac       6 octets only when flags bit 0
//	identity  uvarint length + UTF-8 octets
//	nas       uvarint length + UTF-8 octets
//	site      uvarint length + UTF-8 octets
//	firstSeen 8 octets Unix nanoseconds, 0 = unset
//	lastAuth  8 octets
//	expires   8 octets
//	nattrs    uvarint
//	attr      type 1, vendor uvarint, vendorType 1, tag 1, uvarint length + value
const (
	codecV1      = 1
	codecCurrent = codecV1

	flagHasMAC = 1 << 0
	flagsKnown = flagHasMAC

	// maxEncodedLen bounds what the decoder accepts: far above any valid
	// record (64 attributes of 253 octets is ~17 KiB) yet bounded.
	maxEncodedLen = 32 << 10
)

// encodeRecord returns the current-version encoding of a normalized record.
func encodeRecord(r Record) ([]byte, error) {
	b := make([]byte, 0, 64+len(r.Identity)+len(r.NAS)+len(r.Site)+16*len(r.Attrs))
	b = append(b, codecCurrent, byte(r.Method))
	if r.MAC != "" {
		m, err := parseMAC(r.MAC)
		if err != nil {
			return nil, err
		}
		b = append(b, flagHasMAC)
		b = append(b, m[:]...)
	} else {
		b = append(b, 0)
	}
	for _, s := range []string{r.Identity, r.NAS, r.Site} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range []time.Time{r.FirstSeen, r.LastAuthorized, r.Expires} {
		b = binary.BigEndian.AppendUint64(b, uint64(timeToNanos(t)))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Attrs)))
	for _, a := range r.Attrs {
		b = append(b, a.Type)
		b = binary.AppendUvarint(b, uint64(a.Vendor))
		b = append(b, a.VendorType, a.Tag)
		b = binary.AppendUvarint(b, uint64(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

// decodeRecord decodes any known codec version. The result is validated as
// normalize would (it must re-encode to a record that Upsert accepts); the
// input slice is not retained (bbolt values are only valid inside a tx).
func decodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("%w: empty", ErrBadRecord)
	}
	if len(b) > maxEncodedLen {
		return Record{}, fmt.Errorf("%w: %d octets", ErrBadRecord, len(b))
	}
	switch b[0] {
	case codecV1:
		return decodeV1(b[1:])
	}
	return Record{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
}

func decodeV1(b []byte) (Record, error) {
	d := decoder{b: b}
	var r Record
	r.Method = Method(d.byte())
	flags := d.byte()
	if d.err == nil && flags&^flagsKnown != 0 {
		return Record{}, fmt.Errorf("%w: unknown flags %#x", ErrBadRecord, flags)
	}
	var mac []byte
	if flags&flagHasMAC != 0 {
		mac = d.bytes(macLen)
	}
	identity, nas, site := d.field(), d.field(), d.field()
	r.FirstSeen = nanosToTime(int64(d.uint64()))
	r.LastAuthorized = nanosToTime(int64(d.uint64()))
	r.Expires = nanosToTime(int64(d.uint64()))
	n := d.uvarint(maxAttrs)
	// The values are read first and copied after, in one buffer (cloneAttrs).
	var attrs [maxAttrs]Attr
	for i := uint64(0); i < n && d.err == nil; i++ {
		a := &attrs[i]
		a.Type = d.byte()
		a.Vendor = uint32(d.uvarint(1<<32 - 1))
		a.VendorType = d.byte()
		a.Tag = d.byte()
		a.Value = d.bytes(int(d.uvarint(maxValueLen)))
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing octets", ErrBadRecord, len(d.b))
	}
	r.MAC, r.Identity, r.NAS, r.Site = decodeStrings(mac, identity, nas, site)
	r.Attrs = cloneAttrs(attrs[:n])
	// Reject what the encoder can never produce, so a decoded record is
	// always one Upsert would accept.
	if err := validate(r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// decodeStrings returns the canonical text of mac ("" when the record has
// none) and the three strings of a record, all four in one allocation: every
// lookup decodes the whole record it finds.
func decodeStrings(mac, identity, nas, site []byte) (string, string, string, string) {
	var all strings.Builder
	macText := 0
	if mac != nil {
		macText = 3*macLen - 1
	}
	all.Grow(macText + len(identity) + len(nas) + len(site))
	if mac != nil {
		var out [3*macLen - 1]byte
		all.Write(appendMAC(out[:0], [macLen]byte(mac)))
	}
	all.Write(identity)
	all.Write(nas)
	all.Write(site)
	s := all.String()
	i, n := macText+len(identity), macText+len(identity)+len(nas)
	return s[:macText], s[macText:i], s[i:n], s[n:]
}

// decoder reads fields and remembers the first error, so decodeV1 reads
// like the layout table.
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
	if d.err != nil || len(d.b) < 1 {
		d.fail("octet")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
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
	v := d.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
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

// field reads a length-prefixed string field, still in the input.
func (d *decoder) field() []byte {
	return d.bytes(int(d.uvarint(maxStringLen)))
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
