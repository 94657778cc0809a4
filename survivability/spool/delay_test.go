package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// delayOf returns the Acct-Delay-Time of a valid packet, or -1.
func delayOf(t testing.TB, p []byte) int64 {
	t.Helper()
	_, off, err := parseAccountingRequest(p)
	if err != nil {
		t.Fatalf("result does not parse: %v", err)
	}
	if off < 0 {
		return -1
	}
	return int64(binary.BigEndian.Uint32(p[off:]))
}

func TestAddDelay(t *testing.T) {
	base := acctRequest(7, "s1")
	withDelay := func(secs uint32) []byte { return acctRequest(7, "s1", delayAttr(secs)) }
	full := acctRequest(7, "s1", vsa(maxPacketLen-len(base)))
	tests := []struct {
		name    string
		pkt     []byte
		delay   time.Duration
		want    int64 // Acct-Delay-Time after
		wantLen int
	}{
		{"absent is added", base, 90 * time.Second, 90, len(base) + 6},
		{"absent zero delay", base, 0, 0, len(base) + 6},
		{"present is increased", withDelay(5), 2900 * time.Millisecond, 7, len(base) + 6},
		{"rounded down", withDelay(0), 999 * time.Millisecond, 0, len(base) + 6},
		{"negative counts as zero", withDelay(3), -time.Hour, 3, len(base) + 6},
		{"saturates when present", withDelay(math.MaxUint32 - 10), 100 * time.Second, math.MaxUint32, len(base) + 6},
		{"saturates when absent", base, (math.MaxUint32 + 5) * time.Second, math.MaxUint32, len(base) + 6},
		{"max duration", withDelay(math.MaxUint32), time.Duration(math.MaxInt64), math.MaxUint32, len(base) + 6},
		{"padding dropped", append(append([]byte(nil), withDelay(1)...), 0, 0, 0, 0), time.Second, 2, len(base) + 6},
		{"delay first attribute", func() []byte {
			p := append(acctRequest(7, "")[:headerLen:headerLen], delayAttr(1)...)
			binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)))
			return p
		}(), 10 * time.Second, 11, headerLen + 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte(nil), tt.pkt...)
			out, err := AddDelay(tt.pkt, tt.delay)
			if err != nil {
				t.Fatalf("AddDelay: %v", err)
			}
			if !bytes.Equal(in, tt.pkt) {
				t.Fatal("AddDelay modified its input")
			}
			if got := delayOf(t, out); got != tt.want {
				t.Fatalf("Acct-Delay-Time %d, want %d", got, tt.want)
			}
			if len(out) != tt.wantLen || int(binary.BigEndian.Uint16(out[offLength:])) != len(out) {
				t.Fatalf("length %d (field %d), want %d", len(out), binary.BigEndian.Uint16(out[offLength:]), tt.wantLen)
			}
			// Header (code, id, authenticator) is untouched: re-signing is the caller's.
			if out[offCode] != in[offCode] || out[1] != in[1] || !bytes.Equal(out[4:headerLen], in[4:headerLen]) {
				t.Fatal("header changed beyond Length")
			}
		})
	}

	t.Run("no room", func(t *testing.T) {
		if len(full) > maxPacketLen-acctDelayAttrLen {
			if _, err := AddDelay(full, time.Second); !errors.Is(err, ErrBadPacket) {
				t.Fatalf("AddDelay on a %d-octet packet = %v, want ErrBadPacket", len(full), err)
			}
		} else {
			t.Fatalf("test packet only %d octets", len(full))
		}
	})

	bad := func(mut func(p []byte) []byte) []byte { return mut(append([]byte(nil), base...)) }
	malformed := []struct {
		name string
		pkt  []byte
	}{
		{"nil", nil},
		{"short header", base[:headerLen-1]},
		{"access-request", bad(func(p []byte) []byte { p[offCode] = 1; return p })},
		{"accounting-response", bad(func(p []byte) []byte { p[offCode] = 5; return p })},
		{"length beyond data", bad(func(p []byte) []byte { binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)+1)); return p })},
		{"length below header", bad(func(p []byte) []byte { binary.BigEndian.PutUint16(p[offLength:], 19); return p })},
		{"length above 4096", append(append([]byte(nil), full...), make([]byte, 10)...)},
		{"attribute length 0", bad(func(p []byte) []byte { p[headerLen+1] = 0; return p })},
		{"attribute length 1", bad(func(p []byte) []byte { p[headerLen+1] = 1; return p })},
		{"attribute overruns", bad(func(p []byte) []byte { p[len(p)-len("s1")-1] = 50; return p })},
		{"truncated attribute header", func() []byte {
			p := append(append([]byte(nil), base...), 41)
			binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)))
			return p
		}()},
		{"delay length 5", func() []byte {
			p := append(append([]byte(nil), base...), 41, 5, 0, 0, 0)
			binary.BigEndian.PutUint16(p[offLength:], uint16(len(p)))
			return p
		}()},
		{"two delays", acctRequest(7, "s1", delayAttr(1), delayAttr(2))},
	}
	for _, tt := range malformed {
		t.Run("malformed "+tt.name, func(t *testing.T) {
			if tt.name == "length above 4096" {
				binary.BigEndian.PutUint16(tt.pkt[offLength:], uint16(len(tt.pkt)))
			}
			out, err := AddDelay(tt.pkt, time.Minute)
			if !errors.Is(err, ErrBadPacket) || out != nil {
				t.Fatalf("AddDelay = %x, %v; want ErrBadPacket", out, err)
			}
		})
	}
}

// FuzzAddDelay: on any input AddDelay either fails with ErrBadPacket or
// returns a well-formed Accounting-Request whose Acct-Delay-Time is the old
// one plus the delay (saturating), with every other attribute unchanged.
func FuzzAddDelay(f *testing.F) {
	f.Add(acctRequest(1, "s"), int64(90*time.Second))
	f.Add(acctRequest(1, "s", delayAttr(4)), int64(time.Second))
	f.Add(acctRequest(1, "s", delayAttr(math.MaxUint32)), int64(math.MaxInt64))
	f.Add([]byte{4, 0, 0, 20}, int64(0))
	f.Fuzz(func(t *testing.T, pkt []byte, delay int64) {
		in := append([]byte(nil), pkt...)
		out, err := AddDelay(pkt, time.Duration(delay))
		if !bytes.Equal(in, pkt) {
			t.Fatal("input modified")
		}
		if err != nil {
			if !errors.Is(err, ErrBadPacket) {
				t.Fatalf("error %v does not wrap ErrBadPacket", err)
			}
			return
		}
		l, off, err := parseAccountingRequest(out)
		if err != nil || l != len(out) || off < 0 {
			t.Fatalf("result %x does not parse cleanly: %v", out, err)
		}
		length, oldOff, _ := parseAccountingRequest(pkt)
		var old uint64
		if oldOff >= 0 {
			old = uint64(binary.BigEndian.Uint32(pkt[oldOff:]))
		}
		want := min(old+uint64(max(time.Duration(delay), 0)/time.Second), math.MaxUint32)
		if got := uint64(binary.BigEndian.Uint32(out[off:])); got != want {
			t.Fatalf("delay %d, want %d", got, want)
		}
		// Everything but the delay value and (when appended) Length is the same.
		if oldOff >= 0 {
			if len(out) != length || !bytes.Equal(out[:oldOff], pkt[:oldOff]) || !bytes.Equal(out[oldOff+4:], pkt[oldOff+4:length]) {
				t.Fatal("attributes other than Acct-Delay-Time changed")
			}
		} else if len(out) != length+acctDelayAttrLen || !bytes.Equal(out[4:length], pkt[4:length]) || out[0] != pkt[0] || out[1] != pkt[1] {
			t.Fatal("appending Acct-Delay-Time changed other octets")
		}
	})
}
