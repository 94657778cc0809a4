package sockio

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Datagram is one UDP payload and the address it came from or goes to.
type Datagram struct {
	B    []byte
	Addr netip.AddrPort
	// Local, on a socket bound to a wildcard address (0.0.0.0, [::]), is the address the datagram
	// was sent to, and for a datagram to send the address it must leave from; the zero Addr lets
	// the kernel choose. An answer must come from the address its request went to, or a NAS
	// talking to one of several addresses of a multi-homed or VIP host drops it (RFC 2865 §3
	// identifies a server by address). Linux only; elsewhere it stays zero.
	Local netip.Addr
}

// Batch is one reader's buffers: up to its size datagrams per system call. It is not safe for
// concurrent use; give each reading goroutine its own.
type Batch struct {
	bufs [][]byte
	got  []Datagram // the datagrams of the last Read
	sys  batchSys   // recvmmsg headers (Linux)
}

// NewBatch allocates count buffers of size bytes each. A datagram larger than size is reported
// with len(B) == size, so give one byte more than the largest datagram accepted to detect those.
func NewBatch(count, size int) *Batch {
	b := &Batch{bufs: make([][]byte, count), got: make([]Datagram, 0, count)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
	}
	return b
}

// Datagrams returns what the last Read received. The buffers are reused by the next Read.
func (b *Batch) Datagrams() []Datagram { return b.got }

// UDP is a UDP socket read in batches and written through a Sender.
type UDP struct {
	conn *net.UDPConn
	sys  udpSys
}

// NewUDP wraps a bound socket.
func NewUDP(conn *net.UDPConn) (*UDP, error) {
	u := &UDP{conn: conn}
	if err := u.sys.init(conn); err != nil {
		return nil, err
	}
	return u, nil
}

// Conn returns the socket.
func (u *UDP) Conn() *net.UDPConn { return u.conn }

// Read waits for at least one datagram and receives as many as are queued, up to the batch's
// size. It honours the socket's read deadline.
func (u *UDP) Read(b *Batch) error { return u.read(b) }

// WriteTo sends one datagram now.
func (u *UDP) WriteTo(p []byte, to netip.AddrPort) error { return u.writeTo(p, netip.Addr{}, to) }

// WriteFromTo sends one datagram now from the local address from (see Datagram.Local).
func (u *UDP) WriteFromTo(p []byte, from netip.Addr, to netip.AddrPort) error {
	return u.writeTo(p, from, to)
}

// Sender sends datagrams on one socket. While its Cork is in, datagrams are queued and leave
// together, in one sendmmsg, at the end of the burst; otherwise they leave at once.
type Sender struct {
	udp     *UDP
	cork    *Cork
	onError func(to netip.AddrPort, err error)

	// A Sender made by From sends from one local address through its parent's queue.
	parent *Sender
	from   netip.Addr
	froms  atomic.Pointer[map[netip.Addr]*Sender] // the parent's children, copied on write
	fromMu sync.Mutex                             // serialises the copies

	mu       sync.Mutex
	queue    []Datagram
	spare    []Datagram
	flushing bool
	sys      sendSys // sendmmsg headers, used by the flushing goroutine only
}

// NewSender returns a Sender for u. cork may be nil (never batch). onError, if set, is told about
// every datagram the kernel refused.
func NewSender(u *UDP, cork *Cork, onError func(to netip.AddrPort, err error)) *Sender {
	return &Sender{udp: u, cork: cork, onError: onError}
}

// maxFroms bounds the Senders From keeps: one per local address of the host is the most a
// wildcard socket can see.
const maxFroms = 1024

// From returns a Sender whose datagrams leave from the local address local (a Datagram.Local),
// sharing s's socket, queue and Cork, so that answers from every address still leave in one
// sendmmsg. An invalid local returns s. The Senders are kept, so From does not allocate per
// datagram.
func (s *Sender) From(local netip.Addr) *Sender {
	if !local.IsValid() {
		return s
	}
	root := s
	if s.parent != nil {
		root = s.parent
	}
	if m := root.froms.Load(); m != nil {
		if c, ok := (*m)[local]; ok {
			return c
		}
	}
	c := &Sender{udp: root.udp, cork: root.cork, onError: root.onError, parent: root, from: local}
	root.fromMu.Lock()
	defer root.fromMu.Unlock()
	old := root.froms.Load()
	if old != nil {
		if have, ok := (*old)[local]; ok {
			return have
		}
		if len(*old) >= maxFroms {
			return c // not kept: cannot happen with the addresses of one host
		}
	}
	m := make(map[netip.Addr]*Sender, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[local] = c
	root.froms.Store(&m)
	return c
}

func lenOf(m *map[netip.Addr]*Sender) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// Send sends p to the address to, now or at the end of the burst under way. p must not be
// modified afterwards: it may be sent after Send returns.
func (s *Sender) Send(p []byte, to netip.AddrPort) {
	q := s
	if s.parent != nil {
		q = s.parent
	}
	q.mu.Lock()
	if q.flushing || q.cork.Defer(q) {
		q.queue = append(q.queue, Datagram{B: p, Addr: to, Local: s.from})
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	if err := q.udp.writeTo(p, s.from, to); err != nil && q.onError != nil {
		q.onError(to, err)
	}
}

// Flush sends everything queued. Only one goroutine flushes at a time; datagrams queued while it
// does are sent in its next round.
func (s *Sender) Flush() {
	if s.parent != nil {
		s = s.parent
	}
	s.mu.Lock()
	if s.flushing {
		s.mu.Unlock()
		return
	}
	s.flushing = true
	for len(s.queue) > 0 {
		q := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		s.udp.writeBatch(q, &s.sys, s.onError)
		clear(q) // drop the references to sent packets
		s.mu.Lock()
		s.spare = q[:0]
	}
	s.flushing = false
	s.mu.Unlock()
}
