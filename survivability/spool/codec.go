package spool

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record codec. A record is stored under its 8-octet big-endian sequence
// number (so bbolt's key order is arrival order) and its value starts with
// the codec version; decodeRecord dispatches on it so a spool written by an
// older mxedge replays after an upgrade (testdata/record-v1.hex is a v1
// record checked in once and never regenerated).
//
// Version 1 value layout (integers big-endian, uvarint = encoding/binary):
//
//	version   1 octet  = 1
//	received  8 octets Unix nanoseconds (int64)
//	client    uvarint length + octets (NAS client name, at most 255)
//	src       uvarint length + octets (source address, at most 255)
//	packet    uvarint length + octets (the Accounting-Request, 20..4096,
//	          exactly its Length field: padding is not stored)
const (
	codecV1      = 1
	codecCurrent = codecV1

	keyLen = 8
	// maxNameLen bounds Entry.Client and Entry.Src.
	maxNameLen = 255
	// maxValueLen bounds what the decoder accepts: the largest value the
	// encoder can produce.
	maxValueLen = 1 + 8 + 2*(2+maxNameLen) + 2 + maxPacketLen
)

// encodeRecord returns the current-version value for e. e must have passed
// checkEntry.
func encodeRecord(e Entry) []byte {
	b := make([]byte, 0, 1+8+3*2+len(e.Client)+len(e.Src)+len(e.Packet))
	b = append(b, codecCurrent)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Received.UnixNano()))
	for _, s := range []string{e.Client, e.Src} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Packet)))
	return append(b, e.Packet...)
}

// decodeRecord decodes the value v stored under sequence number seq. The
// result does not alias v (bbolt values are valid only inside their
// transaction).
func decodeRecord(seq uint64, v []byte) (Entry, error) {
	if len(v) == 0 {
		return Entry{}, fmt.Errorf("%w: seq %d: empty", ErrBadRecord, seq)
	}
	if len(v) > maxValueLen {
		return Entry{}, fmt.Errorf("%w: seq %d: %d octets", ErrBadRecord, seq, len(v))
	}
	switch v[0] {
	case codecV1:
		e, err := decodeV1(v[1:])
		if err != nil {
			return Entry{}, fmt.Errorf("seq %d: %w", seq, err)
		}
		e.Seq = seq
		return e, nil
	}
	return Entry{}, fmt.Errorf("%w: record version %d at seq %d", ErrUnknownVersion, v[0], seq)
}

func decodeV1(b []byte) (Entry, error) {
	d := decoder{b: b}
	var e Entry
	e.Received = time.Unix(0, int64(d.uint64())).UTC()
	e.Client = string(d.bytes(int(d.uvarint(maxNameLen))))
	e.Src = string(d.bytes(int(d.uvarint(maxNameLen))))
	e.Packet = append([]byte(nil), d.bytes(int(d.uvarint(maxPacketLen)))...)
	if d.err != nil {
		return Entry{}, d.err
	}
	if len(d.b) != 0 {
		return Entry{}, fmt.Errorf("%w: %d trailing octets", ErrBadRecord, len(d.b))
	}
	// Reject what the encoder never writes, so a decoded record is one
	// Append would accept and Replay never sends a malformed packet.
	if l, err := checkAccountingRequest(e.Packet); err != nil || l != len(e.Packet) {
		return Entry{}, fmt.Errorf("%w: stored packet: %w", ErrBadRecord, err)
	}
	return e, nil
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
		d.err = fmt.Errorf("%w: length %d above limit %d", ErrBadRecord, v, limit)
		d.b = nil
		return 0
	}
	if n != uvarintLen(int(v)) {
		// binary.Uvarint accepts padded encodings ("\x80\x00" = 0); the
		// encoder never writes them, and one encoding per record keeps
		// the codec a bijection.
		d.err = fmt.Errorf("%w: non-minimal varint", ErrBadRecord)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, keyLen), seq)
}
