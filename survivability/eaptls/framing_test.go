package eaptls

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestPacketRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		wire []byte
	}{
		{name: "identity response", p: Packet{Code: CodeResponse, Identifier: 7, Type: TypeIdentity, Data: []byte("bob")},
			wire: []byte{2, 7, 0, 8, 1, 'b', 'o', 'b'}},
		{name: "tls start", p: Packet{Code: CodeRequest, Identifier: 8, Type: TypeTLS, Data: []byte{0x20}},
			wire: []byte{1, 8, 0, 6, 13, 0x20}},
		{name: "empty type data", p: Packet{Code: CodeResponse, Identifier: 0, Type: TypeNotification, Data: []byte{}},
			wire: []byte{2, 0, 0, 5, 2}},
		{name: "success", p: Packet{Code: CodeSuccess, Identifier: 255}, wire: []byte{3, 255, 0, 4}},
		{name: "failure", p: Packet{Code: CodeFailure, Identifier: 1}, wire: []byte{4, 1, 0, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.wire) {
				t.Fatalf("marshal % x, want % x", b, tt.wire)
			}
			got, err := ParsePacket(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Code != tt.p.Code || got.Identifier != tt.p.Identifier || got.Type != tt.p.Type || !bytes.Equal(got.Data, tt.p.Data) {
				t.Errorf("round trip %+v, want %+v", got, tt.p)
			}
		})
	}
}

func TestParsePacketMalformed(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{name: "empty", b: nil},
		{name: "short header", b: []byte{2, 1, 0}},
		{name: "length below header", b: []byte{2, 1, 0, 3, 1}},
		{name: "length beyond buffer", b: []byte{2, 1, 0, 9, 1, 'a'}},
		{name: "request without type", b: []byte{1, 1, 0, 4}},
		{name: "unknown code", b: []byte{9, 1, 0, 4}},
		{name: "code zero", b: []byte{0, 1, 0, 4}},
		{name: "padding ignored", b: []byte{2, 1, 0, 6, 1, 'a', 0, 0, 0}, ok: true},
		{name: "success with data tolerated", b: []byte{3, 1, 0, 5, 0}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePacket(tt.b)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if p.Len() > len(tt.b) {
					t.Errorf("parsed beyond input")
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPacketMarshalLimits(t *testing.T) {
	if _, err := (Packet{Code: 7}).Marshal(); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown code: %v", err)
	}
	big := Packet{Code: CodeRequest, Type: TypeTLS, Data: make([]byte, MaxPacketLen)}
	if _, err := big.Marshal(); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversize: %v", err)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		wire []byte
	}{
		{name: "ack", m: Message{Data: []byte{}}, wire: []byte{0}},
		{name: "start", m: Message{Flags: FlagStart, Data: []byte{}}, wire: []byte{0x20}},
		{name: "unfragmented", m: Message{Data: []byte{22, 3, 1}}, wire: []byte{0, 22, 3, 1}},
		{name: "first fragment", m: Message{Flags: FlagLength | FlagMore, Length: 0x01020304, Data: []byte{1}},
			wire: []byte{0xc0, 1, 2, 3, 4, 1}},
		{name: "last fragment", m: Message{Data: []byte{9}}, wire: []byte{0, 9}},
		{name: "length without more", m: Message{Flags: FlagLength, Length: 1, Data: []byte{9}}, wire: []byte{0x80, 0, 0, 0, 1, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.m.Marshal()
			if !bytes.Equal(b, tt.wire) {
				t.Fatalf("marshal % x, want % x", b, tt.wire)
			}
			got, err := ParseMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Flags != tt.m.Flags || got.Length != tt.m.Length || !bytes.Equal(got.Data, tt.m.Data) {
				t.Errorf("round trip %+v, want %+v", got, tt.m)
			}
		})
	}
	// Reserved bits are ignored on receipt (RFC 5216 §3.1) and cleared on
	// send.
	m, err := ParseMessage([]byte{0x1f})
	if err != nil || !m.IsACK() {
		t.Errorf("reserved bits: %+v %v", m, err)
	}
	if b := m.Marshal(); !bytes.Equal(b, []byte{0}) {
		t.Errorf("reserved bits re-encoded: % x", b)
	}
}

func TestParseMessageMalformed(t *testing.T) {
	for _, b := range [][]byte{nil, {0x80}, {0xc0, 0, 0, 1}} {
		if _, err := ParseMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v", b, err)
		}
	}
}

func TestNakRoundTrip(t *testing.T) {
	for _, types := range [][]Type{{25}, {21, 25, 13}} {
		got, err := ParseNak(AppendNak(nil, types))
		if err != nil || !equalTypes(got, types) {
			t.Errorf("%v: %v %v", types, got, err)
		}
	}
	if b := AppendNak(nil, nil); !bytes.Equal(b, []byte{0}) {
		t.Errorf("no alternative: % x", b)
	}
	if _, err := ParseNak(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty nak: %v", err)
	}
}

func lengthMsg(total uint32, more bool, data []byte) Message {
	m := Message{Flags: FlagLength, Length: total, Data: data}
	if more {
		m.Flags |= FlagMore
	}
	return m
}

func moreMsg(data []byte) Message { return Message{Flags: FlagMore, Data: data} }
func lastMsg(data []byte) Message { return Message{Data: data} }

func TestReassembler(t *testing.T) {
	abc := []byte("abc")
	tests := []struct {
		name    string
		frags   []Message
		want    []byte
		wantErr error
	}{
		{name: "unfragmented", frags: []Message{lastMsg(abc)}, want: abc},
		{name: "unfragmented with L", frags: []Message{lengthMsg(3, false, abc)}, want: abc},
		{name: "three fragments", frags: []Message{lengthMsg(3, true, abc[:1]), moreMsg(abc[1:2]), lastMsg(abc[2:])}, want: abc},
		{name: "L on every fragment", frags: []Message{lengthMsg(3, true, abc[:1]), lengthMsg(3, true, abc[1:2]), lengthMsg(3, false, abc[2:])}, want: abc},
		{name: "no L at all", frags: []Message{moreMsg(abc[:2]), lastMsg(abc[2:])}, want: abc},
		{name: "L changes", frags: []Message{lengthMsg(3, true, abc[:1]), lengthMsg(4, false, abc[1:])}, wantErr: ErrMalformed},
		{name: "short of announced", frags: []Message{lengthMsg(9, true, abc[:1]), lastMsg(abc[1:])}, wantErr: ErrMalformed},
		{name: "beyond announced", frags: []Message{lengthMsg(2, true, abc[:1]), lastMsg(abc[1:])}, wantErr: ErrFragmentOverflow},
		{name: "announced too big", frags: []Message{lengthMsg(MaxMessageSize+1, true, abc)}, wantErr: ErrFragmentOverflow},
		{name: "ack mid-message", frags: []Message{lengthMsg(3, true, abc[:1]), lastMsg(nil)}, wantErr: ErrOutOfOrder},
		{name: "ack instead of data", frags: []Message{lastMsg(nil)}, wantErr: ErrOutOfOrder},
		{name: "start flag", frags: []Message{{Flags: FlagStart, Data: abc}}, wantErr: ErrMalformed},
		{name: "unannounced overflow", frags: func() []Message {
			var ms []Message
			chunk := make([]byte, MaxMessageSize/16)
			for range 17 {
				ms = append(ms, moreMsg(chunk))
			}
			return ms
		}(), wantErr: ErrFragmentOverflow},
		{name: "too many fragments", frags: func() []Message {
			ms := []Message{lengthMsg(MaxFragments+1, true, []byte{1})}
			for range MaxFragments {
				ms = append(ms, moreMsg([]byte{1}))
			}
			return ms
		}(), wantErr: ErrFragmentOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reassembler
			var got []byte
			var err error
			for i, f := range tt.frags {
				got, err = r.add(f)
				if err != nil {
					break
				}
				if (got != nil) != (i == len(tt.frags)-1) {
					t.Fatalf("fragment %d: complete=%v", i, got != nil)
				}
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %q %v", got, err)
			}
			if r.active() {
				t.Error("reassembler not reset")
			}
		})
	}
}

func TestFragmenter(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 450)
	tests := []struct {
		size  int
		flags []Flags
	}{
		{size: 1000, flags: []Flags{0}},
		{size: 450, flags: []Flags{0}},
		{size: 200, flags: []Flags{FlagLength | FlagMore, FlagMore, 0}},
		{size: 449, flags: []Flags{FlagLength | FlagMore, 0}},
	}
	for _, tt := range tests {
		f := newFragmenter(data, tt.size)
		var got []Flags
		var joined []byte
		for !f.done() {
			m := f.next()
			got = append(got, m.Flags)
			if m.Flags&FlagLength != 0 && m.Length != uint32(len(data)) {
				t.Errorf("size %d: length %d", tt.size, m.Length)
			}
			if len(m.Data) > tt.size {
				t.Errorf("size %d: fragment of %d", tt.size, len(m.Data))
			}
			joined = append(joined, m.Data...)
		}
		if !bytes.Equal(joined, data) || len(got) != len(tt.flags) {
			t.Fatalf("size %d: flags %v", tt.size, got)
		}
		for i := range got {
			if got[i] != tt.flags[i] {
				t.Errorf("size %d: flags %v, want %v", tt.size, got, tt.flags)
			}
		}
	}
}

// FuzzParsePacket: no panic, and whatever parses re-encodes to the bytes it
// was parsed from (within Length, Success/Failure data dropped).
func FuzzParsePacket(f *testing.F) {
	f.Add([]byte{2, 7, 0, 8, 1, 'b', 'o', 'b'})
	f.Add([]byte{1, 8, 0, 6, 13, 0x20})
	f.Add([]byte{3, 1, 0, 4})
	f.Add([]byte{2, 1, 0, 11, 13, 0xc0, 0, 0, 0, 9, 22})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		n := int(binary.BigEndian.Uint16(b[offLength:]))
		if p.Code == CodeRequest || p.Code == CodeResponse {
			if !bytes.Equal(out, b[:n]) {
				t.Fatalf("round trip % x → % x", b[:n], out)
			}
		}
		if _, err := ParseMessage(p.Data); err == nil && p.Type == TypeTLS {
			m, _ := ParseMessage(p.Data)
			if m.Flags&^defined == 0 && !bytes.Equal(m.Marshal(), p.Data) {
				t.Fatalf("eap-tls round trip % x → % x", p.Data, m.Marshal())
			}
		}
		if p.Type == TypeNak {
			_, _ = ParseNak(p.Data)
		}
	})
}

// FuzzReassembly splits fuzz input into EAP-TLS messages (each a length
// octet and that many bytes of Type-Data) and feeds them to a reassembler:
// no panic, caps hold.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{6, 0xc0, 0, 0, 0, 2, 'a', 2, 0, 'b'})
	f.Add([]byte{2, 0x40, 'a', 2, 0, 'b'})
	f.Add([]byte{6, 0xc0, 0xff, 0xff, 0xff, 0xff, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r reassembler
		for len(b) > 0 {
			n := int(b[0])
			b = b[1:]
			if n > len(b) {
				n = len(b)
			}
			m, err := ParseMessage(b[:n])
			b = b[n:]
			if err != nil {
				continue
			}
			msg, err := r.add(m)
			if err != nil {
				r = reassembler{}
				continue
			}
			if len(msg) > MaxMessageSize || r.frags > MaxFragments || len(r.buf) > MaxMessageSize {
				t.Fatalf("cap exceeded: msg %d frags %d buf %d", len(msg), r.frags, len(r.buf))
			}
		}
	})
}
