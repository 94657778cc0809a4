package eaptls

import (
	"encoding/binary"
	"fmt"
)

// Flags is the EAP-TLS Flags octet (RFC 5216 §3.1).
type Flags uint8

// EAP-TLS flags, RFC 5216 §3.1. The five low bits are reserved: ignored on
// receipt, zero on send.
const (
	FlagLength Flags = 0x80 // L: the 4-octet TLS Message Length follows
	FlagMore   Flags = 0x40 // M: more fragments follow
	FlagStart  Flags = 0x20 // S: EAP-TLS Start, server to peer only
)

const (
	flagsLen           = 1
	tlsLengthLen       = 4
	defined      Flags = FlagLength | FlagMore | FlagStart
)

// Reassembly limits. A TLS 1.2/1.3 flight carrying a certificate chain of a
// few intermediates is 2–8 KiB; 64 KiB leaves room for large RSA chains
// while bounding what a peer can make us buffer.
const (
	// MaxMessageSize caps a reassembled TLS message (all fragments).
	MaxMessageSize = 64 << 10
	// MaxFragments caps the fragments of one TLS message: 64 KiB in 256
	// fragments means fragments of at least 256 bytes for the largest
	// message, while stopping a peer that trickles one byte per round trip.
	MaxFragments = 256
)

// Fragment sizes: FragmentSize counts TLS bytes per EAP-TLS packet, like
// wpa_supplicant's fragment_size. The default keeps the RADIUS packet under
// a 1500-byte MTU (no IP fragmentation, which NASes and firewalls often
// drop); the maximum leaves room in a 4096-byte RADIUS packet (RFC 2865 §3)
// for the EAP-Message attribute headers (RFC 3579 §3.1), State,
// Message-Authenticator and Proxy-State.
const (
	DefaultFragmentSize = 1000
	MinFragmentSize     = 64
	MaxFragmentSize     = 3000
)

// Message is the Type-Data of an EAP-TLS packet (RFC 5216 §3.1-3.2).
type Message struct {
	Flags Flags
	// Length is the TLS Message Length, present on the wire when Flags has
	// FlagLength: the total size of the TLS data across all fragments.
	Length uint32
	// Data is this fragment's TLS data. After ParseMessage it aliases the
	// input.
	Data []byte
}

// IsACK reports whether m is an EAP-TLS acknowledgement: no flags (other
// than reserved bits) and no data (RFC 5216 §2.1.5, §3.1/§3.2 "no data").
func (m Message) IsACK() bool {
	return m.Flags&defined == 0 && len(m.Data) == 0
}

// ParseMessage decodes EAP-TLS Type-Data.
func ParseMessage(data []byte) (Message, error) {
	if len(data) < flagsLen {
		return Message{}, fmt.Errorf("%w: eap-tls without flags", ErrMalformed)
	}
	m := Message{Flags: Flags(data[0])}
	data = data[flagsLen:]
	if m.Flags&FlagLength != 0 {
		if len(data) < tlsLengthLen {
			return Message{}, fmt.Errorf("%w: eap-tls L flag without length", ErrMalformed)
		}
		m.Length = binary.BigEndian.Uint32(data)
		data = data[tlsLengthLen:]
	}
	m.Data = data
	return m, nil
}

// Len is the encoded length of m.
func (m Message) Len() int {
	n := flagsLen + len(m.Data)
	if m.Flags&FlagLength != 0 {
		n += tlsLengthLen
	}
	return n
}

// Append appends the encoding of m to b. Reserved flag bits are cleared.
func (m Message) Append(b []byte) []byte {
	f := m.Flags & defined
	b = append(b, byte(f))
	if f&FlagLength != 0 {
		b = binary.BigEndian.AppendUint32(b, m.Length)
	}
	return append(b, m.Data...)
}

// Marshal encodes m.
func (m Message) Marshal() []byte {
	return m.Append(make([]byte, 0, m.Len()))
}

// tlsPacket builds a whole EAP packet carrying an EAP-TLS message.
func tlsPacket(code Code, id uint8, m Message) []byte {
	return Packet{Code: code, Identifier: id, Type: TypeTLS, Data: m.Marshal()}.mustMarshal()
}

// reassembler collects the fragments of one TLS message from the peer
// (RFC 5216 §3.1-3.2). The zero value is ready; it resets itself after each
// complete message.
type reassembler struct {
	buf   []byte
	total int  // announced TLS Message Length, valid when known
	known bool // total was announced (L flag)
	frags int
}

// active reports whether a fragmented message is partially received.
func (r *reassembler) active() bool { return r.frags > 0 }

// add takes one fragment. It returns the whole TLS message once the last
// fragment (no M flag) has arrived; until then msg is nil and the caller
// must acknowledge the fragment.
//
// Rules: the first fragment of a fragmented message should carry L
// (RFC 5216 §3.1 says MUST; Windows-era peers repeat it on every fragment,
// which is accepted when the value does not change). A peer that omits it is
// still bounded by MaxMessageSize. Fragments other than the last must carry
// data. An unfragmented message may carry L; its length must then match.
func (r *reassembler) add(m Message) (msg []byte, err error) {
	if m.Flags&FlagStart != 0 {
		return nil, fmt.Errorf("%w: start flag in a tls fragment", ErrMalformed)
	}
	if m.Flags&FlagLength != 0 {
		if m.Length > MaxMessageSize {
			return nil, fmt.Errorf("%w: tls message length %d exceeds %d", ErrFragmentOverflow, m.Length, MaxMessageSize)
		}
		switch {
		case !r.active():
			r.total, r.known = int(m.Length), true
		case !r.known || r.total != int(m.Length):
			return nil, fmt.Errorf("%w: tls message length changed mid-message to %d", ErrMalformed, m.Length)
		}
	}
	more := m.Flags&FlagMore != 0
	if len(m.Data) == 0 {
		// An empty fragment is an ACK, which the peer sends only when it is
		// receiving, not sending (RFC 5216 §2.1.5).
		return nil, fmt.Errorf("%w: empty eap-tls response where tls data was due", ErrOutOfOrder)
	}
	r.frags++
	if r.frags > MaxFragments {
		return nil, fmt.Errorf("%w: more than %d fragments", ErrFragmentOverflow, MaxFragments)
	}
	if len(r.buf)+len(m.Data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: tls message exceeds %d bytes", ErrFragmentOverflow, MaxMessageSize)
	}
	if r.known && len(r.buf)+len(m.Data) > r.total {
		return nil, fmt.Errorf("%w: fragments exceed announced length %d", ErrFragmentOverflow, r.total)
	}
	if r.buf == nil && !more {
		// Unfragmented: no copy needed, but the caller's buffer may be
		// reused, so copy anyway for a stable result.
		msg = append([]byte(nil), m.Data...)
	} else {
		// No preallocation from the announced length: a peer could make
		// us reserve 64 KiB with a one-byte fragment.
		r.buf = append(r.buf, m.Data...)
		if more {
			return nil, nil
		}
		msg = r.buf
	}
	if r.known && len(msg) != r.total {
		return nil, fmt.Errorf("%w: received %d bytes, announced %d", ErrMalformed, len(msg), r.total)
	}
	*r = reassembler{}
	return msg, nil
}

// fragmenter cuts one outgoing TLS flight into EAP-TLS fragments of at most
// size bytes (RFC 5216 §3.1): L and the total length on the first fragment
// of a fragmented message only, M on all fragments but the last. An
// unfragmented message carries neither, as wpa_supplicant does.
type fragmenter struct {
	data []byte
	pos  int
	size int
}

func newFragmenter(data []byte, size int) *fragmenter {
	return &fragmenter{data: data, size: size}
}

// done reports whether every fragment was handed out.
func (f *fragmenter) done() bool { return f.pos >= len(f.data) }

// next returns the next fragment.
func (f *fragmenter) next() Message {
	var m Message
	if f.pos == 0 && len(f.data) > f.size {
		m.Flags |= FlagLength
		m.Length = uint32(len(f.data))
	}
	end := min(f.pos+f.size, len(f.data))
	m.Data = f.data[f.pos:end]
	f.pos = end
	if !f.done() {
		m.Flags |= FlagMore
	}
	return m
}
