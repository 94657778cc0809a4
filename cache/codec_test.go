package cache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write missing golden files in testdata/ (never rewrites record-v1.hex)")

// sampleRecord is a realistic MAB record with tunnel attributes and VSAs.
func sampleRecord() Record {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	return Record{
		MAC:      "00:11:22:33:44:55",
		Identity: "001122334455",
		Method:   MethodMAB,
		NAS:      "10.7.50.2",
		Site:     "MistAA Test Site",
		Attrs: []Attr{
			{Type: 64, Tag: 1, Value: []byte{0, 0, 13}},                                              // Tunnel-Type = VLAN (RFC 3580 §3.31)
			{Type: 65, Tag: 1, Value: []byte{0, 0, 6}},                                               // Tunnel-Medium-Type = IEEE-802
			{Type: 81, Tag: 1, Value: []byte("41")},                                                  // Tunnel-Private-Group-ID
			{Type: 11, Value: []byte("corp-acl")},                                                    // Filter-Id
			{Type: 27, Value: []byte{0, 0, 0x0e, 0x10}},                                              // Session-Timeout 3600
			{Type: 26, Vendor: 9, VendorType: 1, Value: []byte("subscriber:command=reauthenticate")}, // Cisco-AVPair
			{Type: 26, Vendor: 14823, VendorType: 1, Value: []byte("employee")},                      // Aruba-User-Role
		},
		FirstSeen:      t0.Add(-48 * time.Hour),
		LastAuthorized: t0,
		Expires:        t0.Add(7 * 24 * time.Hour),
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"mab", sampleRecord()},
		{"identity only", Record{Identity: "alice@example.com", Method: MethodEAPTLS,
			LastAuthorized: time.Unix(1700000000, 0).UTC(), Expires: time.Unix(1700600000, 0).UTC()}},
		{"zero times", Record{MAC: "ff:ff:ff:ff:ff:ff", Method: MethodOther}},
		{"max strings", Record{MAC: "01:02:03:04:05:06", Identity: strings.Repeat("x", maxStringLen),
			NAS: strings.Repeat("n", maxStringLen), Site: strings.Repeat("s", maxStringLen)}},
		{"empty value", Record{MAC: "01:02:03:04:05:06", Attrs: []Attr{{Type: 11, Value: []byte{}}}}},
		{"big vendor", Record{MAC: "01:02:03:04:05:06", Attrs: []Attr{{Type: 26, Vendor: 1<<32 - 1, VendorType: 255, Value: bytes.Repeat([]byte{7}, maxValueLen)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeRecord(tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeRecord(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			assertRecordEqual(t, got, tt.rec)
		})
	}
}

func assertRecordEqual(t testing.TB, got, want Record) {
	t.Helper()
	if got.MAC != want.MAC || got.Identity != want.Identity || got.Method != want.Method ||
		got.NAS != want.NAS || got.Site != want.Site ||
		!got.FirstSeen.Equal(want.FirstSeen) || !got.LastAuthorized.Equal(want.LastAuthorized) || !got.Expires.Equal(want.Expires) {
		t.Fatalf("record mismatch:\n got %+v\nwant %+v", got, want)
	}
	if len(got.Attrs) != len(want.Attrs) {
		t.Fatalf("attrs: got %d, want %d: %+v", len(got.Attrs), len(want.Attrs), got.Attrs)
	}
	for i := range got.Attrs {
		g, w := got.Attrs[i], want.Attrs[i]
		if g.Type != w.Type || g.Vendor != w.Vendor || g.VendorType != w.VendorType || g.Tag != w.Tag || !bytes.Equal(g.Value, w.Value) {
			t.Fatalf("attr %d: got %+v, want %+v", i, g, w)
		}
	}
}

// TestDecodeV1Golden decodes a v1 record checked in when v1 was current. It
// must keep passing unchanged after the codec moves to a new version.
func TestDecodeV1Golden(t *testing.T) {
	path := filepath.Join("testdata", "record-v1.hex")
	if *update {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			b, err := encodeRecord(sampleRecord())
			if err != nil || b[0] != codecV1 {
				t.Fatalf("cannot write v1 golden: %v", err)
			}
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != codecV1 {
		t.Fatalf("golden version %d, want 1", b[0])
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	assertRecordEqual(t, got, sampleRecord())
}

func TestDecodeRejects(t *testing.T) {
	good, err := encodeRecord(sampleRecord())
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadRecord},
		{"unknown version", mutate(func(b []byte) []byte { b[0] = 99; return b }), ErrUnknownVersion},
		{"truncated", good[:len(good)-1], ErrBadRecord},
		{"trailing", append(append([]byte(nil), good...), 0), ErrBadRecord},
		{"unknown flag", mutate(func(b []byte) []byte { b[2] |= 0x80; return b }), ErrBadRecord},
		{"bad method", mutate(func(b []byte) []byte { b[1] = 9; return b }), ErrBadRecord},
		{"no key", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrBadRecord},
		{"too big", make([]byte, maxEncodedLen+1), ErrBadRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRecord(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// RADIUS types the tests store: per-session attributes the cache keeps as opaquely as any other.
const (
	attrState      = 24 // RFC 2865 §5.24
	attrEAPMessage = 79 // RFC 3579 §3.1
)

func TestNormalizeRecord(t *testing.T) {
	r := sampleRecord()
	r.MAC = "00-11-22-33-44-55"
	r.Attrs = append(r.Attrs, Attr{Type: attrEAPMessage, Value: []byte{3, 1, 0, 4}},
		Attr{Type: 26, Vendor: 311, VendorType: 16, Value: []byte("key")})
	got, err := normalize(r)
	if err != nil {
		t.Fatal(err)
	}
	// The cache judges no attribute (survivability.Replayable does): both extra ones are kept.
	if got.MAC != "00:11:22:33:44:55" || len(got.Attrs) != len(sampleRecord().Attrs)+2 {
		t.Fatalf("normalize: %+v", got)
	}
	bad := []Record{
		{},
		{MAC: "nope"},
		{Identity: "a\x00b"},
		{Identity: strings.Repeat("x", maxStringLen+1)},
		{Identity: "\xff"},
		{Identity: "x", Method: 7},
		{Identity: "x", Attrs: []Attr{{Type: 26, Value: nil}}},
		{Identity: "x", Attrs: []Attr{{Type: 1, Vendor: 9}}},
		{Identity: "x", Attrs: []Attr{{Type: 64, Tag: 32}}},
		{Identity: "x", Attrs: []Attr{{Type: 11, Value: make([]byte, maxValueLen+1)}}},
		{Identity: "x", Attrs: make([]Attr, maxAttrs+1)},
	}
	for i := range bad[len(bad)-1].Attrs {
		bad[len(bad)-1].Attrs[i] = Attr{Type: 11}
	}
	for i, r := range bad {
		if _, err := normalize(r); err == nil {
			t.Errorf("case %d: normalize(%+v) accepted", i, r)
		}
	}
}

// FuzzDecodeRecord: the decoder never panics, and anything it accepts
// re-encodes to the same bytes (one canonical encoding per record).
func FuzzDecodeRecord(f *testing.F) {
	good, _ := encodeRecord(sampleRecord())
	f.Add(good)
	idOnly, _ := encodeRecord(Record{Identity: "bob", Method: MethodEAPTLS})
	f.Add(idOnly)
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalizeForCompare(r), normalizeForCompare(r2)) {
			t.Fatalf("round trip changed record:\n%+v\n%+v", r, r2)
		}
	})
}

func normalizeForCompare(r Record) Record {
	for i := range r.Attrs {
		if len(r.Attrs[i].Value) == 0 {
			r.Attrs[i].Value = nil
		}
	}
	if len(r.Attrs) == 0 {
		r.Attrs = nil
	}
	return r
}

// TestDecodeAllocations: every lookup decodes the record it serves, so decoding costs three
// allocations whatever the record holds: its strings (the MAC's text among them), its attributes
// and their values. Validating them (validate) copies nothing.
func TestDecodeAllocations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rec    Record
		allocs float64
	}{
		{"sample", sampleRecord(), 3},
		{"mab triplet", mabBenchRecord(1), 3},
		{"identity only", Record{Identity: "alice@example.com", Method: MethodEAPTLS}, 1},
		{"mac only", Record{MAC: "01:02:03:04:05:06"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeRecord(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			n := testing.AllocsPerRun(100, func() {
				if _, err := decodeRecord(b); err != nil {
					t.Fatal(err)
				}
			})
			if n != tc.allocs {
				t.Fatalf("%v allocations per decode, want %v", n, tc.allocs)
			}
		})
	}
}

// TestSharedValuesStayApart: decoded and normalized attribute values share one buffer
// (cloneAttrs), yet appending to one never changes the next, and normalize still copies what it
// was given.
func TestSharedValuesStayApart(t *testing.T) {
	in := sampleRecord()
	b, err := encodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Attrs[1].Value[0] = 0xff // the caller's own slice: normalize's copy must not see it
	for _, r := range []Record{dec, norm} {
		_ = append(r.Attrs[0].Value, 0xee, 0xee, 0xee)
		assertRecordEqual(t, r, sampleRecord())
	}
}
