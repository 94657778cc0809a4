package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"mxedge/cache"
	"mxedge/cache/session"
)

// Wire format of the cluster's own messages, carried inside memberlist's (already authenticated
// and encrypted) gossip, push/pull state and reliable user messages. Every message starts with
// the format version and a type; integers are big-endian, uvarint is encoding/binary's.
//
//	learn   v=1 t=1  record (uvarint length + cache.MarshalRecord; LastAuthorized is the stamp)
//	forget  v=1 t=2  method 1, at 8 (Unix ns), mac (uvarint length + text), identity (same)
//	state   v=1 t=3  node (uvarint length + name), then digestBuckets × (count 4, hash 8)
//	want    v=1 t=4  node (requester), n uvarint, n × bucket 2
//	batch   v=1 t=5  n uvarint, n × (t 1 = learn|forget|session, then that message's body): an
//	                 anti-entropy answer
//	changes v=1 t=6  as batch: the changes of the last few milliseconds, sent to every member
//	session v=1 t=7  a session record (uvarint length + cache/session.MarshalReplica; its Stamp
//	                 is the stamp), alone or as an entry of batch and changes
//
// A decoder that meets another version refuses the message (ErrVersion), so a later format
// needs a new version number and a rolling upgrade sends both for a while.
const (
	wireVersion = 1

	msgLearn   = 1
	msgForget  = 2
	msgState   = 3
	msgWant    = 4
	msgBatch   = 5
	msgChanges = 6
	msgSession = 7

	// maxMessage bounds what a decoder accepts (a batch is cut at batchBytes when sent).
	maxMessage = 8 << 20
	maxName    = 255
)

// Errors of the decoder.
var (
	ErrVersion   = errors.New("cluster: unknown message version")
	ErrMalformed = errors.New("cluster: malformed message")
)

// entry is one replicated change: a learned record, a forget (a tombstone), or a session record.
type entry struct {
	forget bool
	rec    cache.Record    // learn
	tomb   tombstone       // forget
	sess   *session.Record // session
}

// tombstone says: the cloud rejected this client at At, so records of it last authorized before
// At are removed everywhere, and such records arriving later are refused.
type tombstone struct {
	Method   cache.Method
	MAC      string
	Identity string
	At       time.Time
}

func (t tombstone) key() string {
	if t.Method == cache.MethodMAB {
		return "fm:" + t.MAC
	}
	return "fe:" + foldIdentity(t.Identity)
}

type writer struct{ b []byte }

func (w *writer) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func appendEntry(b []byte, e entry) ([]byte, error) {
	w := writer{b}
	if e.sess != nil {
		enc, err := session.MarshalReplica(*e.sess)
		if err != nil {
			return b, err
		}
		w.b = append(w.b, msgSession)
		w.str(string(enc))
		return w.b, nil
	}
	if e.forget {
		w.b = append(w.b, msgForget, byte(e.tomb.Method))
		w.b = binary.BigEndian.AppendUint64(w.b, uint64(e.tomb.At.UnixNano()))
		w.str(e.tomb.MAC)
		w.str(e.tomb.Identity)
		return w.b, nil
	}
	enc, err := cache.MarshalRecord(e.rec)
	if err != nil {
		return b, err
	}
	w.b = append(w.b, msgLearn)
	w.str(string(enc))
	return w.b, nil
}

// encodeEntry returns one learn or forget message.
func encodeEntry(e entry) ([]byte, error) {
	return appendEntry([]byte{wireVersion}, e)
}

// digest is a node's summary of what it holds: per bucket, how many entries and the XOR of their
// hashes. Two nodes holding the same entries have the same digest; a differing bucket is pulled.
type digest struct {
	node    string
	buckets [digestBuckets]bucketSum
}

type bucketSum struct {
	count uint32
	hash  uint64
}

func encodeState(d *digest) []byte {
	w := writer{[]byte{wireVersion, msgState}}
	w.str(d.node)
	for _, s := range d.buckets {
		w.b = binary.BigEndian.AppendUint32(w.b, s.count)
		w.b = binary.BigEndian.AppendUint64(w.b, s.hash)
	}
	return w.b
}

func encodeWant(node string, buckets []uint16) []byte {
	w := writer{[]byte{wireVersion, msgWant}}
	w.str(node)
	w.b = binary.AppendUvarint(w.b, uint64(len(buckets)))
	for _, b := range buckets {
		w.b = binary.BigEndian.AppendUint16(w.b, b)
	}
	return w.b
}

// message is a decoded message.
type message struct {
	typ     byte
	entries []entry // learn, forget, batch
	state   *digest // state
	node    string  // want: the requester
	buckets []uint16
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail("short")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) n(k int) []byte {
	if r.err != nil || len(r.b) < k {
		r.fail("short")
		return nil
	}
	v := r.b[:k]
	r.b = r.b[k:]
	return v
}

func (r *reader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > limit {
		r.fail("bad length")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) str(limit int) string {
	n := r.uvarint(uint64(limit))
	return string(r.n(int(n)))
}

func (r *reader) entry(typ byte) entry {
	switch typ {
	case msgLearn:
		enc := r.n(int(r.uvarint(maxMessage)))
		if r.err != nil {
			return entry{}
		}
		rec, err := cache.UnmarshalRecord(enc)
		if err != nil {
			r.err = fmt.Errorf("%w: %w", ErrMalformed, err)
			return entry{}
		}
		return entry{rec: rec}
	case msgSession:
		enc := r.n(int(r.uvarint(maxMessage)))
		if r.err != nil {
			return entry{}
		}
		rec, err := session.UnmarshalReplica(enc)
		if err != nil {
			r.err = fmt.Errorf("%w: %w", ErrMalformed, err)
			return entry{}
		}
		return entry{sess: &rec}
	case msgForget:
		var t tombstone
		t.Method = cache.Method(r.byte())
		if t.Method != cache.MethodMAB && t.Method != cache.MethodEAPTLS {
			r.fail("forget method")
		}
		at := r.n(8)
		if r.err != nil {
			return entry{}
		}
		t.At = time.Unix(0, int64(binary.BigEndian.Uint64(at)))
		t.MAC = r.str(maxName)
		t.Identity = r.str(maxName)
		if r.err == nil && t.Method == cache.MethodMAB {
			mac, err := cache.NormalizeMAC(t.MAC)
			if err != nil {
				r.fail("forget mac")
			}
			t.MAC = mac
		}
		if r.err == nil && t.Method == cache.MethodEAPTLS && t.Identity == "" {
			r.fail("forget identity")
		}
		return entry{forget: true, tomb: t}
	}
	r.fail(fmt.Sprintf("entry type %d", typ))
	return entry{}
}

// decode parses one message; it never panics and never retains b.
func decode(b []byte) (message, error) {
	if len(b) > maxMessage {
		return message{}, fmt.Errorf("%w: %d octets", ErrMalformed, len(b))
	}
	if len(b) < 2 {
		return message{}, fmt.Errorf("%w: short", ErrMalformed)
	}
	if b[0] != wireVersion {
		return message{}, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	r := &reader{b: b[2:]}
	m := message{typ: b[1]}
	switch m.typ {
	case msgLearn, msgForget, msgSession:
		m.entries = []entry{r.entry(m.typ)}
	case msgBatch, msgChanges:
		n := r.uvarint(maxMessage)
		for i := uint64(0); i < n && r.err == nil; i++ {
			m.entries = append(m.entries, r.entry(r.byte()))
		}
	case msgState:
		d := &digest{node: r.str(maxName)}
		for i := range d.buckets {
			v := r.n(12)
			if r.err != nil {
				break
			}
			d.buckets[i] = bucketSum{binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:])}
		}
		m.state = d
	case msgWant:
		m.node = r.str(maxName)
		n := r.uvarint(digestBuckets)
		for i := uint64(0); i < n && r.err == nil; i++ {
			v := r.n(2)
			if r.err != nil {
				break
			}
			bk := binary.BigEndian.Uint16(v)
			if bk >= digestBuckets {
				r.fail("bucket")
			}
			m.buckets = append(m.buckets, bk)
		}
	default:
		return message{}, fmt.Errorf("%w: type %d", ErrMalformed, m.typ)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing octets")
	}
	if r.err != nil {
		return message{}, r.err
	}
	return m, nil
}
