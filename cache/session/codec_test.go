package session

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write missing golden files in testdata/ (never rewrites record-v1.hex)")

func sampleRecord() Record {
	return Record{ID: 42, NAS: "core-sw1", NASAddr: "10.7.50.2", Vendor: "cisco", Site: "MistAA Test Site",
		NASPort: 50101, HasNASPort: true, NASPortID: "GigabitEthernet1/0/1", CalledStationID: "00-11-22-33-44-55:corp",
		SSID: "corp", CallingStationID: "02-00-00-00-00-01", MAC: "02:00:00:00:00:01", UserName: "alice@example.com",
		Method: "eap-tls", VLAN: "300", Class: []byte{0xde, 0xad}, Decider: DecidedCache, Reconcile: ReconcileNeeded,
		ReconcileAttempts: 2, ReconcileAt: t0.Add(time.Hour), AcctSessionID: "0000001A", AcctMultiSessionID: "M-1",
		FramedIP: netip.MustParseAddr("10.9.0.7"), FramedIPv6: netip.MustParseAddr("2001:db8::7"),
		FramedIPv6Prefix: netip.MustParsePrefix("2001:db8:1::/64"), State: StateActive, InputOctets: 1 << 33,
		OutputOctets: 12345, SessionTime: 600, TerminateCause: 0, Interim: 10 * time.Minute,
		Authorized: t0, Started: t0.Add(time.Second), Updated: t0.Add(10 * time.Minute), Expires: t0.Add(40 * time.Minute)}
}

func TestRecordRoundTrip(t *testing.T) {
	long := strings.Repeat("x", maxStringLen)
	for _, tt := range []struct {
		name string
		r    Record
	}{
		{"full", sampleRecord()},
		{"minimal", Record{ID: 1, NAS: "n", State: StateAuthorized}},
		{"stopped", Record{ID: 1<<64 - 1, NAS: "n", State: StateStopped, TerminateCause: 1<<32 - 1, Stopped: t0,
			Interim: maxInterim, InputOctets: 1<<64 - 1}},
		{"max strings", Record{ID: 7, NAS: long, UserName: long, AcctSessionID: long, Class: bytes.Repeat([]byte{1}, maxStringLen), State: StateActive}},
		{"nas port 0", Record{ID: 7, NAS: "n", HasNASPort: true, State: StateActive}},
		{"prefix /0", Record{ID: 7, NAS: "n", FramedIPv6Prefix: netip.MustParsePrefix("::/0"), State: StateActive}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendRecord(nil, &tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.r)
			}
		})
	}
}

func TestRecordRejects(t *testing.T) {
	good, _ := appendRecord(nil, ptr(sampleRecord()))
	for _, tt := range []struct {
		name string
		r    Record
	}{
		{"no id", Record{NAS: "n", State: StateActive}},
		{"no nas", Record{ID: 1, State: StateActive}},
		{"long", Record{ID: 1, NAS: strings.Repeat("x", maxStringLen+1), State: StateActive}},
		{"bad mac", Record{ID: 1, NAS: "n", MAC: "02-00-00-00-00-01", State: StateActive}},
		{"v6 as v4", Record{ID: 1, NAS: "n", FramedIP: netip.MustParseAddr("::1"), State: StateActive}},
		{"unmasked prefix", Record{ID: 1, NAS: "n", FramedIPv6Prefix: netip.MustParsePrefix("2001:db8::1/64"), State: StateActive}},
		{"state", Record{ID: 1, NAS: "n"}},
		{"decider", Record{ID: 1, NAS: "n", State: StateActive, Decider: 9}},
		{"interim", Record{ID: 1, NAS: "n", State: StateActive, Interim: time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := appendRecord(nil, &tt.r); !errors.Is(err, ErrBadRecord) {
				t.Fatalf("encode: %v, want ErrBadRecord", err)
			}
		})
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrBadRecord},
		{"version", []byte{9}, ErrUnknownVersion},
		{"truncated", good[:len(good)-1], ErrBadRecord},
		{"trailing", append(append([]byte(nil), good...), 0), ErrBadRecord},
		{"flags", append([]byte{codecV1, 0x80}, good[2:]...), ErrBadRecord},
		{"huge", make([]byte, maxEncodedLen+1), ErrBadRecord},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("decode: %v, want %v", err, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestRecordV1Golden: a v1 record written once stays readable by every later binary.
func TestRecordV1Golden(t *testing.T) { checkRecordGolden(t, "record-v1.hex", sampleRecord()) }

// checkRecordGolden decodes testdata/name and compares it with want; -update writes the file
// once, from want, when it does not exist (a fixture is never rewritten: it is what an older
// binary wrote).
func checkRecordGolden(t *testing.T, name string, want Record) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if _, err := os.Stat(path); err != nil {
			b, _ := appendRecord(nil, &want)
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	h, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", name, got, want)
	}
}

// FuzzDecodeRecord: the decoder never panics, and what it accepts re-encodes and decodes to the
// same record.
func FuzzDecodeRecord(f *testing.F) {
	good, _ := appendRecord(nil, ptr(sampleRecord()))
	f.Add(good)
	minimal, _ := appendRecord(nil, &Record{ID: 1, NAS: "n", State: StateAuthorized})
	f.Add(minimal)
	f.Add([]byte{codecV1})
	f.Add([]byte{2, 0, 0})
	v2, _ := MarshalReplica(replicaSample())
	f.Add(v2)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
	})
}
