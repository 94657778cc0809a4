package sockio

import (
	"net"
	"net/netip"
	"sync"
)

// Datagram is one UDP payload and the address it came from or goes to.
type Datagram struct {
	B    []byte
	Addr netip.AddrPort
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
func (u *UDP) WriteTo(p []byte, to netip.AddrPort) error { return u.writeTo(p, to) }

// Sender sends datagrams on one socket. While its Cork is in, datagrams are queued and leave
// together, in one sendmmsg, at the end of the burst; otherwise they leave at once.
type Sender struct {
	udp     *UDP
	cork    *Cork
	onError func(to netip.AddrPort, err error)

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

// Send sends p to the address to, now or at the end of the burst under way. p must not be
// modified afterwards: it may be sent after Send returns.
func (s *Sender) Send(p []byte, to netip.AddrPort) {
	s.mu.Lock()
	if s.flushing || s.cork.Defer(s) {
		s.queue = append(s.queue, Datagram{B: p, Addr: to})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := s.udp.writeTo(p, to); err != nil && s.onError != nil {
		s.onError(to, err)
	}
}

// Flush sends everything queued. Only one goroutine flushes at a time; datagrams queued while it
// does are sent in its next round.
func (s *Sender) Flush() {
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
