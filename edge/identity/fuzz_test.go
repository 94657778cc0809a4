package identity

import (
	"bytes"
	"testing"
	"time"
)

// FuzzQueueRecord: the queue's record decoders never panic, and what decodes encodes back to the
// same bytes.
func FuzzQueueRecord(f *testing.F) {
	f.Add(item{kind: KindUpdate, key: "sw1\x00s1", payload: []byte(`{"type":"update"}`)}.encode())
	f.Add(acctRecord{received: time.Unix(1_800_000_000, 7), nas: "sw1", pkt: []byte{4, 1, 0, 20}}.encode())
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if it, err := decodeItem(seqKey(9), b); err == nil {
			if it.seq != 9 || !bytes.Equal(it.encode(), b) {
				t.Fatalf("item round trip: %x -> %+v -> %x", b, it, it.encode())
			}
		}
		if r, err := decodeAcct(b); err == nil {
			if !bytes.Equal(r.encode(), b) {
				t.Fatalf("accounting record round trip: %x -> %x", b, r.encode())
			}
		}
	})
}
