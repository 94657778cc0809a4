//go:build linux

package sockio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why raw system calls. Every socket Go hands out is non-blocking and registered with the runtime
// poller, so reading, writing, recvmmsg and sendmmsg on it return at once (EAGAIN when they would
// block, and RawConn then waits in the poller). Issuing them with RawSyscall rather than Syscall
// skips the runtime's enter/exit-syscall bookkeeping, and with it the system monitor thread, which
// otherwise wakes every 20 µs to look for processors "stuck" in a system call: on loopback a
// sendto spends its time delivering the datagram to the receiver, long enough to be looked at,
// and the monitor alone took 15 % of mxedge's CPU in the proxy benchmark.

// maxBatch bounds the datagrams of one sendmmsg.
const maxBatch = 64

type udpSys struct {
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6: how destination addresses are encoded
	// pktinfo is set on a socket bound to a wildcard address: every datagram read carries the
	// address it was sent to (IP_PKTINFO, RFC 3542 §6.1 IPV6_RECVPKTINFO) and answers are sent
	// from it (in_pktinfo ipi_spec_dst, in6_pktinfo ipi6_addr). The control messages ride in the
	// same recvmmsg and sendmmsg: no system call is added.
	pktinfo bool
}

// ctrlWords sizes the control buffer of one message: one cmsghdr with an in6_pktinfo (the
// larger of the two), in 8-byte words so that the header is aligned.
const ctrlWords = 8

type ctrlBuf [ctrlWords]uint64

func (c *ctrlBuf) bytes() []byte { return unsafe.Slice((*byte)(unsafe.Pointer(c)), len(c)*8) }

func (u *udpSys) init(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockio: %w", err)
	}
	var sa unix.Sockaddr
	cerr := rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) })
	if cerr != nil {
		return fmt.Errorf("sockio: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("sockio: getsockname: %w", err)
	}
	u.rc = rc
	u.family = unix.AF_INET6
	level, opt := unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		u.family = unix.AF_INET
		level, opt = unix.IPPROTO_IP, unix.IP_PKTINFO
		u.pktinfo = a.Addr == [4]byte{}
	case *unix.SockaddrInet6:
		// On a dual-stack socket IPv4 datagrams get an in6_pktinfo with the v4-mapped address
		// too, and the kernel accepts one to send from (Linux ip_cmsg_send).
		u.pktinfo = a.Addr == [16]byte{}
	}
	if u.pktinfo {
		cerr = rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, 1) })
		if cerr != nil {
			return fmt.Errorf("sockio: %w", cerr)
		}
		if err != nil {
			return fmt.Errorf("sockio: enable packet info: %w", err)
		}
	}
	return nil
}

type batchSys struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	ctrls []ctrlBuf // packet info, on a wildcard socket
}

func (u *UDP) read(b *Batch) error {
	s := &b.sys
	if s.hdrs == nil {
		s.hdrs = make([]unix.Mmsghdr, len(b.bufs))
		s.iovs = make([]unix.Iovec, len(b.bufs))
		s.names = make([]unix.RawSockaddrAny, len(b.bufs))
		for i := range s.hdrs {
			s.iovs[i].Base = &b.bufs[i][0]
			s.iovs[i].SetLen(len(b.bufs[i]))
			s.hdrs[i].Hdr.Iov = &s.iovs[i]
			s.hdrs[i].Hdr.SetIovlen(1)
			s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		}
		if u.sys.pktinfo {
			s.ctrls = make([]ctrlBuf, len(b.bufs))
			for i := range s.hdrs {
				s.hdrs[i].Hdr.Control = &s.ctrls[i].bytes()[0]
			}
		}
	}
	for i := range s.hdrs {
		s.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(s.names[i]))
		s.hdrs[i].Hdr.Flags = 0
		s.hdrs[i].Len = 0
		if s.ctrls != nil {
			s.hdrs[i].Hdr.SetControllen(len(s.ctrls[i]) * 8)
		}
	}
	var n int
	var errno syscall.Errno
	err := u.sys.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), 0, 0, 0)
			if e == unix.EINTR {
				continue
			}
			n, errno = int(r), e
			return e != unix.EAGAIN
		}
	})
	runtime.KeepAlive(b)
	b.got = b.got[:0]
	if err != nil {
		return err
	}
	if errno != 0 {
		return os.NewSyscallError("recvmmsg", errno)
	}
	for i := range n {
		addr, ok := decodeAddr(&s.names[i])
		if !ok {
			continue // not an IP peer: cannot happen on a UDP socket
		}
		d := Datagram{B: b.bufs[i][:s.hdrs[i].Len], Addr: addr}
		if s.ctrls != nil {
			d.Local = decodePktinfo(s.ctrls[i].bytes()[:min(int(s.hdrs[i].Hdr.Controllen), len(s.ctrls[i])*8)])
		}
		b.got = append(b.got, d)
	}
	return nil
}

// decodePktinfo finds the local address in the control messages of one datagram (zero when
// there is none, or when it is a multicast group: answer those from the kernel's choice).
func decodePktinfo(b []byte) netip.Addr {
	hdrLen := unix.CmsgLen(0)
	for len(b) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(b) {
			return netip.Addr{}
		}
		data := b[hdrLen:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// ipi_spec_dst is the local address the kernel would answer from; for a unicast
			// datagram it is the destination, for a broadcast the receiving interface's.
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom4(pi.Spec_dst)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			a := netip.AddrFrom16(pi.Addr)
			switch {
			case a.IsMulticast():
				return netip.Addr{}
			case a.IsLinkLocalUnicast():
				// A link-local address means nothing without its interface.
				a = a.WithZone(strconv.FormatUint(uint64(pi.Ifindex), 10))
			}
			return a
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return netip.Addr{}
}

// encodePktinfo writes the control message that makes a datagram leave from from, and returns
// its length (0: none, the kernel chooses).
func encodePktinfo(c *ctrlBuf, family int, from netip.Addr) int {
	b := c.bytes()
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	if family == unix.AF_INET {
		if !from.Unmap().Is4() {
			return 0
		}
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		(*unix.Inet4Pktinfo)(data).Spec_dst = from.Unmap().As4()
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(data)
	pi.Addr = from.As16() // an IPv4 address as v4-mapped, for a dual-stack socket
	if z := from.Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			pi.Ifindex = uint32(id)
		}
	}
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

func (u *UDP) writeTo(p []byte, from netip.Addr, to netip.AddrPort) error {
	var name unix.RawSockaddrAny
	namelen, err := encodeAddr(&name, u.sys.family, to)
	if err != nil {
		return err
	}
	var ctrl ctrlBuf
	ctrlLen := 0
	if u.sys.pktinfo && from.IsValid() {
		ctrlLen = encodePktinfo(&ctrl, u.sys.family, from)
	}
	var msg unix.Msghdr
	var iov unix.Iovec
	if ctrlLen > 0 {
		// sendmsg instead of sendto: still one system call.
		if len(p) > 0 {
			iov.Base = &p[0]
		}
		iov.SetLen(len(p))
		msg.Name = (*byte)(unsafe.Pointer(&name))
		msg.Namelen = namelen
		msg.Iov = &iov
		msg.SetIovlen(1)
		msg.Control = &ctrl.bytes()[0]
		msg.SetControllen(ctrlLen)
	}
	var errno syscall.Errno
	werr := u.sys.rc.Write(func(fd uintptr) bool {
		for {
			var e syscall.Errno
			if ctrlLen > 0 {
				_, _, e = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
			} else {
				_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
					0, uintptr(unsafe.Pointer(&name)), uintptr(namelen))
			}
			if e == unix.EINTR {
				continue
			}
			errno = e
			return e != unix.EAGAIN
		}
	})
	runtime.KeepAlive(p)
	runtime.KeepAlive(&ctrl)
	runtime.KeepAlive(&iov)
	if werr != nil {
		return werr
	}
	if errno != 0 && ctrlLen > 0 {
		return os.NewSyscallError("sendmsg", errno)
	}
	if errno != 0 {
		return os.NewSyscallError("sendto", errno)
	}
	return nil
}

type sendSys struct {
	hdrs  [maxBatch]unix.Mmsghdr
	iovs  [maxBatch]unix.Iovec
	names [maxBatch]unix.RawSockaddrAny
	ctrls [maxBatch]ctrlBuf  // packet info, on a wildcard socket
	ds    [maxBatch]Datagram // what hdrs describe, to report refusals
}

// writeBatch sends ds with as few sendmmsg calls as it takes, in order; a datagram that cannot be
// sent is reported and skipped.
func (u *UDP) writeBatch(ds []Datagram, s *sendSys, onError func(netip.AddrPort, error)) {
	n := 0
	for i, d := range ds {
		namelen, err := encodeAddr(&s.names[n], u.sys.family, d.Addr)
		if err == nil && len(d.B) == 0 {
			err = errors.New("sockio: empty datagram")
		}
		if err != nil {
			report(onError, d, err)
		} else {
			s.iovs[n] = unix.Iovec{Base: &d.B[0]}
			s.iovs[n].SetLen(len(d.B))
			s.hdrs[n] = unix.Mmsghdr{}
			s.hdrs[n].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[n]))
			s.hdrs[n].Hdr.Namelen = namelen
			s.hdrs[n].Hdr.Iov = &s.iovs[n]
			s.hdrs[n].Hdr.SetIovlen(1)
			if u.sys.pktinfo && d.Local.IsValid() {
				if l := encodePktinfo(&s.ctrls[n], u.sys.family, d.Local); l > 0 {
					s.hdrs[n].Hdr.Control = &s.ctrls[n].bytes()[0]
					s.hdrs[n].Hdr.SetControllen(l)
				}
			}
			s.ds[n] = d
			n++
		}
		if n == maxBatch || (n > 0 && i == len(ds)-1) {
			u.sendmmsg(s, n, onError)
			n = 0
		}
	}
	clear(s.iovs[:]) // drop the references to the packets
	clear(s.ds[:])
}

// sendmmsg sends the n datagrams s describes, resuming after a partial send or a refusal.
func (u *UDP) sendmmsg(s *sendSys, n int, onError func(netip.AddrPort, error)) {
	for off := 0; off < n; {
		var sent int
		var errno syscall.Errno
		werr := u.sys.rc.Write(func(fd uintptr) bool {
			for {
				r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[off])), uintptr(n-off), 0, 0, 0)
				if e == unix.EINTR {
					continue
				}
				sent, errno = int(r), e
				return e != unix.EAGAIN
			}
		})
		switch {
		case werr != nil:
			for _, d := range s.ds[off:n] {
				report(onError, d, werr)
			}
			return
		case errno != 0:
			// Nothing was sent: the first datagram is the one refused.
			report(onError, s.ds[off], os.NewSyscallError("sendmmsg", errno))
			off++
		case sent <= 0:
			report(onError, s.ds[off], errors.New("sockio: sendmmsg sent nothing"))
			off++
		default:
			off += sent
		}
	}
}

func report(onError func(netip.AddrPort, error), d Datagram, err error) {
	if onError != nil {
		onError(d.Addr, err)
	}
}

func decodeAddr(sa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), ntohs(in.Port)), true
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(in.Addr)
		if in.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(in.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, ntohs(in.Port)), true
	}
	return netip.AddrPort{}, false
}

func encodeAddr(sa *unix.RawSockaddrAny, family int, ap netip.AddrPort) (uint32, error) {
	a := ap.Addr()
	if family == unix.AF_INET {
		if !a.Unmap().Is4() {
			return 0, fmt.Errorf("sockio: cannot send to %v from an IPv4 socket", ap)
		}
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*in = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.Unmap().As4()}
		return uint32(unsafe.Sizeof(*in)), nil
	}
	in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	*in = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		id, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			ifi, ierr := net.InterfaceByName(z)
			if ierr != nil {
				return 0, fmt.Errorf("sockio: zone of %v: %w", ap, ierr)
			}
			id = uint64(ifi.Index)
		}
		in.Scope_id = uint32(id)
	}
	return uint32(unsafe.Sizeof(*in)), nil
}

// Port fields of socket addresses are in network byte order.
func htons(v uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(v>>8), byte(v)
	return v
}

func ntohs(v uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&v))
	return uint16(b[0])<<8 | uint16(b[1])
}

// Stream is a TCP connection whose Read and Write are raw system calls (see above); everything
// else, deadlines included, is the wrapped connection's.
type Stream struct {
	net.Conn
	rc syscall.RawConn
}

// SetLinger sets SO_LINGER on the wrapped TCP connection (see Abort).
func (s *Stream) SetLinger(sec int) error {
	if tc, ok := s.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return nil
}

// NewStream wraps nc; a connection without a file descriptor is returned as it is.
func NewStream(nc net.Conn) net.Conn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	return &Stream{Conn: nc, rc: rc}
}

func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			var e syscall.Errno
			n, _, e = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			if e == unix.EINTR {
				continue
			}
			errno = e
			return e != unix.EAGAIN
		}
	})
	runtime.KeepAlive(p)
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

func (s *Stream) Write(p []byte) (int, error) {
	off := 0
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for off < len(p) {
			n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[off])), uintptr(len(p)-off))
			switch e {
			case 0:
				off += int(n)
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	runtime.KeepAlive(p)
	if err != nil {
		return off, err
	}
	if errno != 0 {
		return off, &net.OpError{Op: "write", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
	}
	return off, nil
}

// WriteSome writes as much of p as the socket takes now and never waits: a short count with a nil
// error means the send buffer is full (see WaitWrite). A caller that must not block on a peer, such
// as a goroutine reading requests, writes through it. It goes through RawConn.Control, not Write:
// Write holds the descriptor's write lock for as long as a WaitWrite is waiting, and fails once a
// write deadline has passed; the caller serialises its writes itself.
func (s *Stream) WriteSome(p []byte) (int, error) {
	off := 0
	var errno syscall.Errno
	err := s.rc.Control(func(fd uintptr) {
		for off < len(p) {
			n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[off])), uintptr(len(p)-off))
			switch e {
			case 0:
				off += int(n)
			case unix.EINTR:
			case unix.EAGAIN:
				return
			default:
				errno = e
				return
			}
		}
	})
	runtime.KeepAlive(p)
	if err != nil {
		return off, err
	}
	if errno != 0 {
		return off, &net.OpError{Op: "write", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
	}
	return off, nil
}

// WaitWrite calls try, which writes without waiting (with WriteSome) and reports whether it got
// anywhere, until it does, the write deadline passes (os.ErrDeadlineExceeded) or the stream is
// closed; between calls it waits for the socket to become writable. try runs once before any wait,
// after the poller has been armed, so a socket that drained in the meantime is not missed. The
// write deadline governs only WaitWrite, never WriteSome.
func (s *Stream) WaitWrite(try func() bool) error {
	return s.rc.Write(func(uintptr) bool { return try() })
}
