package cache

import (
	"errors"
	"testing"
)

func TestNormalizeMAC(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{in: "aabbccddeeff", want: "aa:bb:cc:dd:ee:ff"},
		{in: "AABBCCDDEEFF", want: "aa:bb:cc:dd:ee:ff"},
		{in: "AA-BB-CC-DD-EE-FF", want: "aa:bb:cc:dd:ee:ff"},
		{in: "aa:bb:cc:dd:ee:ff", want: "aa:bb:cc:dd:ee:ff"},
		{in: "Aa:bB:cc:DD:ee:fF", want: "aa:bb:cc:dd:ee:ff"},
		{in: "aabb.ccdd.eeff", want: "aa:bb:cc:dd:ee:ff"},
		{in: "AABB.CCDD.EEFF", want: "aa:bb:cc:dd:ee:ff"},
		{in: "00:00:00:00:00:00", want: "00:00:00:00:00:00"},
		{in: "", err: true},
		{in: "aa:bb:cc:dd:ee", err: true},
		{in: "aa:bb:cc:dd:ee:ff:00", err: true},
		{in: "aa:bb-cc:dd:ee:ff", err: true}, // mixed separators
		{in: "aa.bb.cc.dd.ee.ff", err: true},
		{in: "aabb:ccdd:eeff", err: true},
		{in: "aabbccddeefg", err: true},
		{in: "aabbccddeef ", err: true},
		{in: "aabb.ccdd-eeff", err: true},
		{in: "a:bb:cc:dd:ee:fff", err: true},
		{in: "aa:bb:cc:dd:ee:f\x00", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeMAC(tt.in)
			if tt.err {
				if !errors.Is(err, ErrBadMAC) {
					t.Fatalf("NormalizeMAC(%q) = %q, %v; want ErrBadMAC", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeMAC(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzNormalizeMAC checks that whatever is accepted comes out canonical and
// stable, and that the four notations of one address agree.
func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{"aabbccddeeff", "AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff", "aabb.ccdd.eeff", "", "zz:zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeMAC(s)
		if b, ok := ParseMAC([]byte(s)); ok != (err == nil) || ok && FormatMAC(b) != got {
			t.Fatalf("ParseMAC(%q) = %v, %v; NormalizeMAC %q, %v", s, b, ok, got, err)
		}
		if err != nil {
			if !errors.Is(err, ErrBadMAC) {
				t.Fatalf("error %v does not wrap ErrBadMAC", err)
			}
			return
		}
		if len(got) != 17 {
			t.Fatalf("NormalizeMAC(%q) = %q: not 17 characters", s, got)
		}
		again, err := NormalizeMAC(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
		b, _ := parseMAC(got)
		bare := got[0:2] + got[3:5] + got[6:8] + got[9:11] + got[12:14] + got[15:17]
		for _, alt := range []string{bare, bare[0:4] + "." + bare[4:8] + "." + bare[8:12]} {
			if v, err := NormalizeMAC(alt); err != nil || v != got {
				t.Fatalf("notation %q of %q gave %q, %v", alt, got, v, err)
			}
		}
		if formatMAC(b) != got {
			t.Fatalf("format/parse mismatch for %q", got)
		}
	})
}

// TestMACParsingAllocates nothing on the request path: ParseMAC of bytes, and NormalizeMAC of a
// MAC already canonical (what the Learner hands the cache).
func TestMACParsingAllocates(t *testing.T) {
	user := []byte("02-00-5E-00-00-01")
	canon := "02:00:5e:00:00:01"
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := ParseMAC(user); !ok {
			t.Fatal("not parsed")
		}
		if _, ok := ParseMAC([]byte("alice")); ok {
			t.Fatal("alice parsed")
		}
		if m, err := NormalizeMAC(canon); err != nil || m != canon {
			t.Fatal(m, err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}
