package spool

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write missing golden files in testdata/ (never rewrites record-v1.hex)")

func sampleEntry() Entry {
	return Entry{
		Received: time.Date(2026, 11, 22, 12, 34, 56, 789, time.UTC),
		Client:   "core-sw-01",
		Src:      "10.7.50.2:50123",
		Packet:   acctRequest(42, "0000002A-0001", delayAttr(3)),
	}
}

func assertEntryEqual(t testing.TB, got, want Entry) {
	t.Helper()
	if got.Seq != want.Seq || !got.Received.Equal(want.Received) || got.Client != want.Client ||
		got.Src != want.Src || !bytes.Equal(got.Packet, want.Packet) {
		t.Fatalf("entry mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"sample", sampleEntry()},
		{"empty names, header only", Entry{Received: time.Unix(0, 1).UTC(), Packet: func() []byte {
			p := acctRequest(1, "")[:headerLen:headerLen]
			p[3] = headerLen
			return p
		}()}},
		{"max names, max packet", Entry{Received: time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC), Client: strings.Repeat("c", maxNameLen),
			Src: strings.Repeat("s", maxNameLen), Packet: acctRequest(1, "big", vsa(maxPacketLen-len(acctRequest(1, "big"))))}},
		{"before 1970", Entry{Received: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Packet: acctRequest(1, "x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := encodeRecord(tt.e)
			if int64(keyLen+len(v)) != tt.e.encodedLen() {
				t.Fatalf("encodedLen %d, actual key+value %d", tt.e.encodedLen(), keyLen+len(v))
			}
			if len(v) > maxValueLen {
				t.Fatalf("encoded %d octets, decoder limit %d", len(v), maxValueLen)
			}
			got, err := decodeRecord(77, v)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := tt.e
			want.Seq = 77
			assertEntryEqual(t, got, want)
			v[len(v)-1] ^= 0xff // the decoded packet does not alias the value
			if got.Packet[len(got.Packet)-1] == v[len(v)-1] {
				t.Fatal("decoded packet aliases the stored value")
			}
		})
	}
}

// TestRecordV1Golden decodes a v1 record checked in once: a spool written
// by this version must replay after any future layout change.
func TestRecordV1Golden(t *testing.T) {
	path := filepath.Join("testdata", "record-v1.hex")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && *update {
		must(t, os.WriteFile(path, []byte(hex.EncodeToString(encodeRecord(sampleEntry()))+"\n"), 0o644))
		raw, err = os.ReadFile(path)
	}
	must(t, err)
	v, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	must(t, err)
	got, err := decodeRecord(5, v)
	must(t, err)
	want := sampleEntry()
	want.Seq = 5
	assertEntryEqual(t, got, want)
}

func TestDecodeRecordErrors(t *testing.T) {
	good := encodeRecord(sampleEntry())
	withPacket := func(p []byte) []byte {
		return encodeRecord(Entry{Received: time.Unix(1, 0), Packet: p})
	}
	notAcct := acctRequest(1, "x")
	notAcct[offCode] = 1
	tests := []struct {
		name string
		v    []byte
		want error
	}{
		{"empty", nil, ErrBadRecord},
		{"unknown version", append([]byte{2}, good[1:]...), ErrUnknownVersion},
		{"truncated time", good[:5], ErrBadRecord},
		{"truncated packet", good[:len(good)-1], ErrBadRecord},
		{"trailing octet", append(append([]byte(nil), good...), 0), ErrBadRecord},
		{"name too long", append(append([]byte{codecV1}, make([]byte, 8)...), 0x80, 0x02), ErrBadRecord},
		{"bad varint", append(append([]byte{codecV1}, make([]byte, 8)...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), ErrBadRecord},
		{"padded varint", append(append([]byte{codecV1}, make([]byte, 8)...), 0x80, 0x00, 0, 20), ErrBadRecord},
		{"not accounting", withPacket(notAcct), ErrBadRecord},
		{"padding stored", withPacket(append(acctRequest(1, "x"), 0)), ErrBadRecord},
		{"oversized", make([]byte, maxValueLen+1), ErrBadRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(1, tt.v); !errors.Is(err, tt.want) {
				t.Fatalf("decode = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzDecodeRecord: the decoder never panics, and whatever it accepts
// re-encodes to the same octets (the layout has one encoding per entry).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(sampleEntry()))
	f.Add(encodeRecord(Entry{Packet: acctRequest(1, "")}))
	f.Add([]byte{codecV1})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decodeRecord(9, v)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if again := encodeRecord(e); !bytes.Equal(again, v) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", v, again)
		}
		if _, err := (&Spool{now: time.Now}).prepare(e); err != nil {
			t.Fatalf("decoded entry would not be accepted by Append: %v", err)
		}
	})
}
