package cache

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// JSON Lines format of Export and Import (docs/cache.md): one object per
// line, times in RFC 3339 with nanoseconds (UTC), attribute values in hex.
// Unknown fields are ignored so a newer cloud snapshot still imports.
type jsonRecord struct {
	MAC            string     `json:"mac,omitempty"`
	Identity       string     `json:"identity,omitempty"`
	Method         Method     `json:"method"`
	NAS            string     `json:"nas,omitempty"`
	Site           string     `json:"site,omitempty"`
	Attrs          []jsonAttr `json:"attrs,omitempty"`
	FirstSeen      *time.Time `json:"first_seen,omitempty"`
	LastAuthorized *time.Time `json:"last_authorized,omitempty"`
	Expires        *time.Time `json:"expires,omitempty"`
}

type jsonAttr struct {
	Type       uint8  `json:"type"`
	Vendor     uint32 `json:"vendor,omitempty"`
	VendorType uint8  `json:"vendor_type,omitempty"`
	Tag        uint8  `json:"tag,omitempty"`
	Value      string `json:"value"` // hex
}

func toJSON(r Record) jsonRecord {
	j := jsonRecord{MAC: r.MAC, Identity: r.Identity, Method: r.Method, NAS: r.NAS, Site: r.Site}
	for _, a := range r.Attrs {
		j.Attrs = append(j.Attrs, jsonAttr{Type: a.Type, Vendor: a.Vendor, VendorType: a.VendorType,
			Tag: a.Tag, Value: hex.EncodeToString(a.Value)})
	}
	tp := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	j.FirstSeen, j.LastAuthorized, j.Expires = tp(r.FirstSeen), tp(r.LastAuthorized), tp(r.Expires)
	return j
}

func fromJSON(j jsonRecord) (Record, error) {
	r := Record{MAC: j.MAC, Identity: j.Identity, Method: j.Method, NAS: j.NAS, Site: j.Site}
	for i, a := range j.Attrs {
		v, err := hex.DecodeString(a.Value)
		if err != nil {
			return Record{}, fmt.Errorf("%w: attr %d value: %v", ErrBadRecord, i, err)
		}
		r.Attrs = append(r.Attrs, Attr{Type: a.Type, Vendor: a.Vendor, VendorType: a.VendorType, Tag: a.Tag, Value: v})
	}
	for _, p := range []struct {
		dst *time.Time
		src *time.Time
	}{{&r.FirstSeen, j.FirstSeen}, {&r.LastAuthorized, j.LastAuthorized}, {&r.Expires, j.Expires}} {
		if p.src != nil {
			*p.dst = p.src.UTC()
		}
	}
	return r, nil
}

// Export writes every unexpired record as JSON Lines.
func (s *Store) Export(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var werr error
	err := s.List(func(r Record) bool {
		werr = enc.Encode(toJSON(r))
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("cache: export: %w", err)
	}
	return nil
}

// LineError is one rejected import line.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e LineError) Unwrap() error { return e.Err }

// ImportReport says what Import did with each line.
type ImportReport struct {
	Lines    int         // non-blank lines read
	Imported int         // records written
	Older    int         // skipped: the stored entry was authorized at the same time or later (mergeNewer)
	Expired  int         // skipped: already expired
	Full     int         // skipped: new records the full store could not admit (Options.MaxEntries)
	Bad      int         // lines rejected
	Errors   []LineError // the first MaxImportErrors rejected lines
}

// Import limits.
const (
	MaxImportErrors = 100
	maxImportLine   = 64 << 10
	importBatch     = 1000
)

// Import reads JSON Lines, validates every line, and writes the good
// records (in transactions of 1000) while reporting the line numbers of the
// bad ones. With mergeNewer an incoming record replaces a stored one only if
// its LastAuthorized is later (the cloud cache-sync rule); otherwise it
// always replaces. Expired records are skipped, times in the future clamped
// to now, and new records beyond Options.MaxEntries admitted as Learn admits
// them (counted in Full when refused). The error is non-nil only
// for a read or database failure; bad lines are in the report.
func (s *Store) Import(r io.Reader, mergeNewer bool) (ImportReport, error) {
	var rep ImportReport
	if s.opts.ReadOnly {
		return rep, ErrReadOnly
	}
	defer s.memo.reset()
	br := bufio.NewReaderSize(r, 64<<10)
	var batch []Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.update(func(t *txn) error {
			for _, nr := range batch {
				rk := recordKey(nr)
				old, ok, _ := t.get(rk)
				if ok && mergeNewer && !nr.LastAuthorized.After(old.LastAuthorized) {
					rep.Older++
					continue
				}
				if !ok && t.recs.Get(rk) == nil {
					if err := s.admit(t, nr.LastAuthorized); errors.Is(err, ErrFull) {
						rep.Full++
						continue
					} else if err != nil {
						return err
					}
				}
				nr.FirstSeen = firstSeen(old, ok, nr.FirstSeen, nr.LastAuthorized)
				if err := t.replace(rk, nr, old, ok); err != nil {
					return err
				}
				rep.Imported++
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	bad := func(line int, err error) {
		rep.Bad++
		if len(rep.Errors) < MaxImportErrors {
			rep.Errors = append(rep.Errors, LineError{Line: line, Err: err})
		}
	}
	for line := 1; ; line++ {
		b, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return rep, fmt.Errorf("cache: import line %d: %w", line, err)
		}
		eof := errors.Is(err, io.EOF)
		b = bytes.TrimSpace(b)
		switch {
		case tooLong:
			rep.Lines++
			bad(line, fmt.Errorf("%w: line longer than %d octets", ErrBadRecord, maxImportLine))
		case len(b) > 0:
			rep.Lines++
			nr, err := s.parseImportLine(b)
			switch {
			case errors.Is(err, ErrExpired):
				rep.Expired++
			case err != nil:
				bad(line, err)
			default:
				batch = append(batch, nr)
			}
		}
		if len(batch) >= importBatch || eof {
			if err := flush(); err != nil {
				return rep, fmt.Errorf("cache: import: %w", err)
			}
		}
		if eof {
			return rep, nil
		}
	}
}

func (s *Store) parseImportLine(b []byte) (Record, error) {
	var j jsonRecord
	if err := json.Unmarshal(b, &j); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	r, err := fromJSON(j)
	if err != nil {
		return Record{}, err
	}
	if r.LastAuthorized.IsZero() {
		return Record{}, fmt.Errorf("%w: last_authorized missing", ErrBadRecord)
	}
	return s.prepare(r)
}

// readLine returns the next line without its newline, reading at most
// maxImportLine octets of it (the rest is discarded and tooLong set).
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		frag, isPrefix, err := br.ReadLine()
		if !tooLong {
			if len(line)+len(frag) > maxImportLine {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err != nil {
			return line, tooLong, err
		}
		if !isPrefix {
			return line, tooLong, nil
		}
	}
}
