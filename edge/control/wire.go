package control

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"mxedge/cache"
)

// Record is the JSON form of a cache.Record on the control socket: the
// cache's JSON Lines schema (docs/cache.md), so a line of list or show is
// also a valid import line. Times are RFC 3339 UTC; attribute values hex.
type Record struct {
	MAC            string     `json:"mac,omitempty"`
	Identity       string     `json:"identity,omitempty"`
	Method         string     `json:"method"`
	NAS            string     `json:"nas,omitempty"`
	Site           string     `json:"site,omitempty"`
	Attrs          []Attr     `json:"attrs,omitempty"`
	FirstSeen      *time.Time `json:"first_seen,omitempty"`
	LastAuthorized *time.Time `json:"last_authorized,omitempty"`
	Expires        *time.Time `json:"expires,omitempty"`
}

// Attr is the JSON form of a cache.Attr.
type Attr struct {
	Type       uint8  `json:"type"`
	Vendor     uint32 `json:"vendor,omitempty"`
	VendorType uint8  `json:"vendor_type,omitempty"`
	Tag        uint8  `json:"tag,omitempty"`
	Value      string `json:"value"`
}

// RecordToWire converts a cache record to its JSON form.
func RecordToWire(r cache.Record) Record {
	w := Record{MAC: r.MAC, Identity: r.Identity, Method: r.Method.String(), NAS: r.NAS, Site: r.Site}
	for _, a := range r.Attrs {
		w.Attrs = append(w.Attrs, Attr{Type: a.Type, Vendor: a.Vendor, VendorType: a.VendorType, Tag: a.Tag,
			Value: hex.EncodeToString(a.Value)})
	}
	w.FirstSeen, w.LastAuthorized, w.Expires = timePtr(r.FirstSeen), timePtr(r.LastAuthorized), timePtr(r.Expires)
	return w
}

// RecordFromWire is the inverse of RecordToWire. It checks the method and
// the hex values; the cache validates the rest when a record is stored.
func RecordFromWire(w Record) (cache.Record, error) {
	m, err := cache.ParseMethod(w.Method)
	if err != nil {
		return cache.Record{}, err
	}
	r := cache.Record{MAC: w.MAC, Identity: w.Identity, Method: m, NAS: w.NAS, Site: w.Site}
	for i, a := range w.Attrs {
		v, err := hex.DecodeString(a.Value)
		if err != nil {
			return cache.Record{}, fmt.Errorf("%w: attr %d value: %v", cache.ErrBadRecord, i, err)
		}
		r.Attrs = append(r.Attrs, cache.Attr{Type: a.Type, Vendor: a.Vendor, VendorType: a.VendorType, Tag: a.Tag, Value: v})
	}
	for _, p := range []struct {
		dst *time.Time
		src *time.Time
	}{{&r.FirstSeen, w.FirstSeen}, {&r.LastAuthorized, w.LastAuthorized}, {&r.Expires, w.Expires}} {
		if p.src != nil {
			*p.dst = p.src.UTC()
		}
	}
	return r, nil
}

// DecodeRecord decodes one JSON object (a line of list or show).
func DecodeRecord(b []byte) (cache.Record, error) {
	var w Record
	if err := json.Unmarshal(b, &w); err != nil {
		return cache.Record{}, fmt.Errorf("control: decode record: %w", err)
	}
	r, err := RecordFromWire(w)
	if err != nil {
		return cache.Record{}, fmt.Errorf("control: decode record: %w", err)
	}
	return r, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// statsWire is cache.Stats on the wire (snake_case, stable names).
type statsWire struct {
	Entries        int        `json:"entries"`
	ExpiredPending int        `json:"expired_pending"`
	DBSize         int64      `json:"db_size"`
	QueueDepth     int        `json:"queue_depth"`
	Drops          uint64     `json:"drops"`
	Committed      uint64     `json:"committed"`
	Commits        uint64     `json:"commits"`
	WriteErrors    uint64     `json:"write_errors"`
	Swept          uint64     `json:"swept"`
	LastSweep      *time.Time `json:"last_sweep,omitempty"`
	LastSweepCount int        `json:"last_sweep_count"`
}

// StatsJSON renders cache.Stats with the control socket's field names (the
// CLI's `cache stats --json` prints the same).
func StatsJSON(s cache.Stats) any { return statsToWire(s) }

func statsToWire(s cache.Stats) statsWire {
	return statsWire{Entries: s.Entries, ExpiredPending: s.ExpiredPending, DBSize: s.DBSize, QueueDepth: s.QueueDepth,
		Drops: s.Drops, Committed: s.Committed, Commits: s.Commits, WriteErrors: s.WriteErrors, Swept: s.Swept,
		LastSweep: timePtr(s.LastSweep), LastSweepCount: s.LastSweepCount}
}

func statsFromWire(w statsWire) cache.Stats {
	s := cache.Stats{Entries: w.Entries, ExpiredPending: w.ExpiredPending, DBSize: w.DBSize, QueueDepth: w.QueueDepth,
		Drops: w.Drops, Committed: w.Committed, Commits: w.Commits, WriteErrors: w.WriteErrors, Swept: w.Swept,
		LastSweepCount: w.LastSweepCount}
	if w.LastSweep != nil {
		s.LastSweep = w.LastSweep.UTC()
	}
	return s
}

// reportWire is cache.ImportReport on the wire.
type reportWire struct {
	Lines    int             `json:"lines"`
	Imported int             `json:"imported"`
	Older    int             `json:"older"`
	Expired  int             `json:"expired"`
	Bad      int             `json:"bad"`
	Errors   []lineErrorWire `json:"errors,omitempty"`
}

type lineErrorWire struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

func reportToWire(r cache.ImportReport) reportWire {
	w := reportWire{Lines: r.Lines, Imported: r.Imported, Older: r.Older, Expired: r.Expired, Bad: r.Bad}
	for _, e := range r.Errors {
		w.Errors = append(w.Errors, lineErrorWire{Line: e.Line, Error: e.Err.Error()})
	}
	return w
}

// reportFromWire rebuilds the report. The line errors come back as
// RemoteError: their sentinels did not cross the socket.
func reportFromWire(w reportWire) cache.ImportReport {
	r := cache.ImportReport{Lines: w.Lines, Imported: w.Imported, Older: w.Older, Expired: w.Expired, Bad: w.Bad}
	for _, e := range w.Errors {
		r.Errors = append(r.Errors, cache.LineError{Line: e.Line, Err: &RemoteError{Message: e.Error}})
	}
	return r
}

// errorWire is every error body; purge and import results embed it.
type errorWire struct {
	Error string `json:"error,omitempty"`
}

type importResult struct {
	reportWire
	errorWire
}

type removedResult struct {
	Removed int `json:"removed"`
	errorWire
}

type deleteResult struct {
	Removed bool `json:"removed"`
}

// RemoteError is an error the daemon reported: Status is the HTTP status
// (0 for an error inside a 200 result, such as a failed purge).
type RemoteError struct {
	Status  int
	Message string

	report *reportWire // an import's partial report
}

func (e *RemoteError) Error() string { return e.Message }
