package sockio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func listenUDP(tb testing.TB, addr string) *UDP {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	u, err := NewUDP(c)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func addrOf(u *UDP) netip.AddrPort { return u.Conn().LocalAddr().(*net.UDPAddr).AddrPort() }

// readAll reads until want datagrams arrived or a second passed.
func readAll(tb testing.TB, u *UDP, want int) []Datagram {
	tb.Helper()
	var got []Datagram
	b := NewBatch(8, 64)
	u.Conn().SetReadDeadline(time.Now().Add(time.Second))
	defer u.Conn().SetReadDeadline(time.Time{})
	for len(got) < want {
		if err := u.Read(b); err != nil {
			tb.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		for _, d := range b.Datagrams() {
			got = append(got, Datagram{B: bytes.Clone(d.B), Addr: d.Addr})
		}
	}
	return got
}

type flushCounter struct {
	mu sync.Mutex
	n  int
}

func (f *flushCounter) Flush() { f.mu.Lock(); f.n++; f.mu.Unlock() }

func TestCork(t *testing.T) {
	var nilCork *Cork
	nilCork.Begin()
	if nilCork.Defer(&flushCounter{}) {
		t.Fatal("a nil cork put a write off")
	}
	nilCork.End()

	var c Cork
	f := &flushCounter{}
	if c.Defer(f) {
		t.Fatal("write put off outside a burst")
	}
	c.Begin()
	c.Begin()
	// Twice: a second write in the same burst is put off as well.
	if !c.Defer(f) {
		t.Fatal("write not put off inside a burst")
	}
	if !c.Defer(f) {
		t.Fatal("second write not put off inside a burst")
	}
	c.End()
	if f.n != 1 {
		t.Fatalf("inner End flushed %d times, want 1 (once per flusher, whatever the writes)", f.n)
	}
	if !c.Defer(f) {
		t.Fatal("outer burst ended early")
	}
	c.End()
	if f.n != 2 {
		t.Fatalf("outer End: %d flushes, want 2", f.n)
	}
	c.End() // unbalanced End must not wedge later bursts
	c.Begin()
	c.End()
}

// orderLog records, in order, the flushes of a flusher and the runs of tasks.
type orderLog struct{ events []string }

type loggedFlusher struct{ log *orderLog }

func (f loggedFlusher) Flush() { f.log.events = append(f.log.events, "flush") }

type loggedTask struct {
	log  *orderLog
	name string
}

func (t loggedTask) Run() { t.log.events = append(t.log.events, t.name) }

// TestCorkAfter: a task put off in a burst runs once, at the burst's end and after its writes
// were flushed; outside a burst (or on a nil cork) After says the caller must run it.
func TestCorkAfter(t *testing.T) {
	var nilCork *Cork
	if nilCork.After(loggedTask{}) {
		t.Fatal("a nil cork put a task off")
	}
	var c Cork
	log := &orderLog{}
	if c.After(loggedTask{log, "early"}) {
		t.Fatal("task put off outside a burst")
	}
	c.Begin()
	if !c.After(loggedTask{log, "a"}) {
		t.Fatal("task not put off inside a burst")
	}
	if !c.Defer(loggedFlusher{log}) {
		t.Fatal("write not put off inside a burst")
	}
	if !c.After(loggedTask{log, "b"}) {
		t.Fatal("second task not put off")
	}
	if len(log.events) != 0 {
		t.Fatalf("ran before the burst ended: %v", log.events)
	}
	c.End()
	if got, want := strings.Join(log.events, " "), "flush a b"; got != want {
		t.Fatalf("End ran %q, want %q (writes first, then the tasks in order)", got, want)
	}
	c.Begin()
	c.End()
	if len(log.events) != 3 {
		t.Fatalf("a task ran twice: %v", log.events)
	}
}

func TestBatchReadAndSender(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}} {
		t.Run(tc.name, func(t *testing.T) {
			rx, tx := listenUDP(t, tc.addr), listenUDP(t, tc.addr)
			var cork Cork
			var errs []error
			s := NewSender(tx, &cork, func(_ netip.AddrPort, err error) { errs = append(errs, err) })

			// Outside a burst a datagram leaves at once.
			s.Send([]byte("now"), addrOf(rx))
			if got := readAll(t, rx, 1); string(got[0].B) != "now" || got[0].Addr != addrOf(tx) {
				t.Fatalf("got %q from %v, want \"now\" from %v", got[0].B, got[0].Addr, addrOf(tx))
			}

			// Inside one, datagrams wait for its end and then all leave.
			cork.Begin()
			for i := range 20 {
				s.Send(fmt.Appendf(nil, "d%02d", i), addrOf(rx))
			}
			rx.Conn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if err := rx.Read(NewBatch(1, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a datagram left before the burst ended (err %v)", err)
			}
			cork.End()
			got := readAll(t, rx, 20)
			for i, d := range got {
				if want := fmt.Sprintf("d%02d", i); string(d.B) != want {
					t.Fatalf("datagram %d is %q, want %q (order kept)", i, d.B, want)
				}
			}
			if len(errs) != 0 {
				t.Fatal(errs)
			}
		})
	}
}

func TestSenderReportsRefusedDatagrams(t *testing.T) {
	rx, tx := listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")
	var cork Cork
	var refused []netip.AddrPort
	s := NewSender(tx, &cork, func(to netip.AddrPort, err error) {
		if err == nil {
			t.Error("refusal without a reason")
		}
		refused = append(refused, to)
	})
	v6 := netip.MustParseAddrPort("[2001:db8::1]:1812")
	s.Send([]byte("x"), v6) // an IPv4 socket cannot send to IPv6
	cork.Begin()
	s.Send([]byte("a"), addrOf(rx))
	s.Send([]byte("b"), v6)
	s.Send(nil, addrOf(rx))
	s.Send([]byte("c"), addrOf(rx))
	cork.End()
	if len(refused) != 3 || refused[0] != v6 || refused[1] != v6 || refused[2] != addrOf(rx) {
		t.Fatalf("refused %v, want the two IPv6 sends and the empty datagram", refused)
	}
	got := readAll(t, rx, 2)
	if string(got[0].B) != "a" || string(got[1].B) != "c" {
		t.Fatalf("got %q, %q: a refused datagram held up the rest", got[0].B, got[1].B)
	}
}

func TestBatchReportsOversize(t *testing.T) {
	rx, tx := listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")
	if err := tx.WriteTo(make([]byte, 100), addrOf(rx)); err != nil {
		t.Fatal(err)
	}
	b := NewBatch(4, 33)
	if err := rx.Read(b); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Datagrams()[0].B); n != 33 {
		t.Fatalf("oversize datagram reported with %d bytes, want the buffer size 33", n)
	}
}

// TestConcurrentBursts: goroutines bursting over one Cork and one Sender lose nothing, whichever
// goroutine's End sends what.
func TestConcurrentBursts(t *testing.T) {
	rx, tx := listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0")
	rx.Conn().SetReadBuffer(4 << 20)
	var cork Cork
	s := NewSender(tx, &cork, func(_ netip.AddrPort, err error) { t.Error(err) })
	const workers, bursts, per = 4, 200, 3
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range bursts {
				cork.Begin()
				for j := range per {
					s.Send(fmt.Appendf(nil, "%d/%d/%d", w, i, j), addrOf(rx))
				}
				cork.End()
				if i%50 == 0 {
					s.Send([]byte("direct"), addrOf(rx)) // outside this goroutine's burst
				}
			}
		}()
	}
	wg.Wait()
	want := workers * (bursts*per + bursts/50)
	seen := map[string]bool{}
	for _, d := range readAll(t, rx, want) {
		if string(d.B) != "direct" && seen[string(d.B)] {
			t.Fatalf("%q sent twice", d.B)
		}
		seen[string(d.B)] = true
	}
}

func TestStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	s := NewStream(raw)
	if runtime.GOOS == "linux" && s == raw {
		t.Fatal("NewStream returned the connection unwrapped")
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than the socket buffers
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(peer)
		done <- b
	}()
	if n, err := s.Write(big); err != nil || n != len(big) {
		t.Fatalf("write: %d, %v", n, err)
	}
	raw.(*net.TCPConn).CloseWrite()
	if got := <-done; !bytes.Equal(got, big) {
		t.Fatalf("peer got %d bytes, want %d intact", len(got), len(big))
	}

	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	s.SetReadDeadline(time.Time{})
	peer.Write([]byte("hello"))
	peer.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello then EOF", got, err)
	}
	s.Close()
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// TestListenUDPGroup: the sockets of a group share one port, a port 0 chosen by the first, and
// each receives datagrams.
func TestListenUDPGroup(t *testing.T) {
	conns, err := ListenUDPGroup("udp4", "127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if runtime.GOOS != "linux" {
		if len(conns) != 1 {
			t.Fatalf("%d sockets outside Linux", len(conns))
		}
		return
	}
	if len(conns) != 3 {
		t.Fatalf("%d sockets, want 3", len(conns))
	}
	addr := conns[0].LocalAddr().String()
	for _, c := range conns[1:] {
		if c.LocalAddr().String() != addr {
			t.Fatalf("sockets on %v and %v", addr, c.LocalAddr())
		}
	}
	// From many source ports every datagram arrives on some socket of the group.
	got := make(chan int, 64)
	for i, c := range conns {
		go func() {
			buf := make([]byte, 16)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				got <- i
			}
		}()
	}
	const n = 32
	for range n {
		s, err := net.Dial("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("x"))
		s.Close()
	}
	seen := map[int]int{}
	for range n {
		select {
		case i := <-got:
			seen[i]++
		case <-time.After(5 * time.Second):
			t.Fatalf("datagrams lost: got %v", seen)
		}
	}
	if len(seen) < 2 {
		t.Errorf("32 sources all went to one socket: %v", seen)
	}
}

// TestSteerGroup: steering sends every datagram of a group to the socket named, whatever its
// source; removing the program spreads them again, and removing it twice is no error.
func TestSteerGroup(t *testing.T) {
	conns, err := ListenUDPGroup("udp4", "127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if runtime.GOOS != "linux" {
		// One socket per group: nothing to steer, and steering says so without an error.
		if err := SteerGroup(conns[0], 0); err != nil {
			t.Fatal(err)
		}
		return
	}
	got := make(chan int, 64)
	for i, c := range conns {
		go func() {
			buf := make([]byte, 16)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				got <- i
			}
		}()
	}
	addr := conns[0].LocalAddr().String()
	// send sends one datagram from each of n fresh source ports and returns where they arrived.
	send := func(n int) map[int]int {
		t.Helper()
		for range n {
			s, err := net.Dial("udp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("x"))
			s.Close()
		}
		seen := map[int]int{}
		for range n {
			select {
			case i := <-got:
				seen[i]++
			case <-time.After(5 * time.Second):
				t.Fatalf("datagrams lost: got %v", seen)
			}
		}
		return seen
	}
	for _, to := range []int{len(conns) - 1, 0} {
		if err := SteerGroup(conns[1], to); err != nil { // any member steers the whole group
			t.Fatal(err)
		}
		if seen := send(32); seen[to] != 32 {
			t.Fatalf("steered to socket %d: arrivals %v", to, seen)
		}
	}
	for range 2 {
		if err := SteerGroup(conns[0], -1); err != nil {
			t.Fatal(err)
		}
	}
	if seen := send(32); len(seen) < 2 {
		t.Errorf("spread again: 32 sources all went to one socket: %v", seen)
	}
}
