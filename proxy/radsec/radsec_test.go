package radsec

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxedge/pki/pkitest"
	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

func statusPacket(t testing.TB, id uint8) packet.Packet {
	t.Helper()
	p, err := StatusServer(nil, id, []byte(DefaultSecret))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadPacketStream(t *testing.T) {
	a, b := statusPacket(t, 1), statusPacket(t, 2)
	stream := append(append([]byte{}, a...), b...)
	r := bufio.NewReader(bytes.NewReader(stream))
	for _, want := range []packet.Packet{a, b} {
		p, err := ReadPacket(r)
		if err != nil || !bytes.Equal(p, want) {
			t.Fatalf("ReadPacket = %x, %v", p, err)
		}
	}
	if _, err := ReadPacket(r); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated", a[:30], io.ErrUnexpectedEOF},
		{"length too small", []byte{1, 1, 0, 10, 0, 0}, ErrFrame},
		{"length too large", []byte{1, 1, 0xff, 0xff}, ErrFrame},
		{"bad attribute", append([]byte{1, 1, 0, 22}, append(make([]byte, 16), 1, 9)...), ErrFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadPacket(bufio.NewReader(bytes.NewReader(tt.in))); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzReadPacket(f *testing.F) {
	f.Add([]byte(statusPacket(f, 3)))
	f.Add([]byte{1, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for range 64 {
			p, err := ReadPacket(r)
			if err != nil {
				return
			}
			if _, err := packet.Parse(p); err != nil {
				t.Fatalf("ReadPacket returned an invalid packet: %v", err)
			}
		}
	})
}

// countObserver counts discarded replies.
type countObserver struct{ discarded atomic.Int32 }

func (*countObserver) RTT(time.Duration)     {}
func (*countObserver) Probe(bool)            {}
func (o *countObserver) Discarded(err error) { o.discarded.Add(1) }

// TestConnBadReplyFailsOnlyThatRequest: a reply with a wrong authenticator is discarded and counted;
// its request ends at its deadline with ErrBadReply, and the connection keeps serving the next one
// (radsecproxy #208).
func TestConnBadReplyFailsOnlyThatRequest(t *testing.T) {
	client, server := net.Pipe()
	obs := new(countObserver)
	c := NewConn(client, ConnOptions{StatusInterval: time.Hour, DeadAfter: time.Hour, Observer: obs})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.Run(ctx) }()
	go func() {
		defer wg.Done()
		ServeConn(ctx, server, ServeOptions{WriteTimeout: time.Second}, func(p packet.Packet, reply ReplyFunc) {
			b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
			secret := []byte(DefaultSecret)
			if u, _ := p.Attr(packet.AttrUserName); string(u) == "bad" {
				secret = []byte("wrong")
			}
			resp, _ := b.Finish(secret, p.Authenticator())
			reply(resp)
		})
	}()
	defer func() { cancel(); wg.Wait() }()
	send := func(user string) error {
		done := make(chan error, 1)
		err := c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) {
			b := packet.New(dst, packet.CodeAccessRequest, id, bytes.Repeat([]byte{byte(id)}, 16))
			b.AddMA()
			b.AddString(packet.AttrUserName, user)
			return b.Finish([]byte(DefaultSecret), nil)
		}, time.Now().Add(time.Second), func(_ packet.Packet, err error) { done <- err })
		if err != nil {
			return err
		}
		return <-done
	}
	if err := send("bad"); !errors.Is(err, ErrBadReply) || errors.Is(err, ErrTimeout) {
		t.Fatalf("bad reply: %v", err)
	}
	if n := obs.discarded.Load(); n != 1 {
		t.Fatalf("%d replies discarded, want 1", n)
	}
	if err := send("good"); err != nil {
		t.Fatalf("next request on the same connection: %v", err)
	}
}

// TestConnWatchdog drives the watchdog with an injected clock: a silent peer is probed, then declared
// dead dead_after after the probe, and pending requests fail with ErrConnDead.
func TestConnWatchdog(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go io.Copy(io.Discard, server) // a blackhole: reads everything, answers nothing
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := NewConn(client, ConnOptions{Now: clock, StatusInterval: time.Second, DeadAfter: 2 * time.Second})
	errc := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); c.readLoop() }()
		go c.w.run()
		<-c.Done()
		wg.Wait()
		errc <- c.Err()
	}()
	failed := make(chan error, 1)
	c.Exchange(func(dst []byte, id uint8) (packet.Packet, error) { return StatusServer(dst, id, []byte(DefaultSecret)) },
		now.Add(time.Hour), func(_ packet.Packet, err error) { failed <- err })
	advance(1500 * time.Millisecond)
	c.check(clock()) // nothing received for 1.5 s: probe
	c.mu.Lock()
	probing := c.probing
	c.mu.Unlock()
	if !probing {
		t.Fatal("idle connection not probed")
	}
	advance(time.Second)
	c.check(clock()) // oldest request is 2.5 s old, nothing received: dead
	if err := <-failed; !errors.Is(err, ErrConnDead) {
		t.Fatalf("pending request: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrConnDead) {
		t.Fatalf("connection: %v", err)
	}
}

// recorder keeps every byte written to the TCP side.
type recorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, append([]byte(nil), p...))
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// TestOnePacketPerRecord: a burst of packets leaves as one TLS record per packet (FreeRADIUS 3.2
// cannot take several in one record) but in few system calls.
func TestOnePacketPerRecord(t *testing.T) {
	lab := pkitest.Must(t)
	cTCP, sTCP := net.Pipe()
	rec := &recorder{Conn: cTCP}
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	client := Client(rec, cfg)
	server := Server(sTCP, lab.ServerTLS())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int, 1)
	go func() {
		n := 0
		ServeConn(ctx, server, ServeOptions{WriteTimeout: time.Second}, func(p packet.Packet, reply ReplyFunc) {
			n++
			if n == 20 {
				got <- n
			}
		})
	}()
	// net.Pipe is synchronous: the server handshakes inside ServeConn's first read.
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.writes = nil
	rec.mu.Unlock()
	w := newFrameWriter(client, time.Second, nil)
	// Packets queued while another goroutine is writing leave together in its next round.
	w.flushing = true
	for i := range 20 {
		w.write(statusPacket(t, uint8(i)))
	}
	go w.drain()
	go w.run()
	defer w.stop()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not get 20 packets")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var all []byte
	for _, b := range rec.writes {
		all = append(all, b...)
	}
	records := 0
	for off := 0; off+5 <= len(all); {
		n := int(all[off+3])<<8 | int(all[off+4])
		if all[off] == 23 { // application data
			records++
		}
		off += 5 + n
	}
	if records != 20 {
		t.Fatalf("%d application-data records for 20 packets", records)
	}
	if len(rec.writes) > 5 {
		t.Fatalf("%d writes for a burst of 20 packets: not batched", len(rec.writes))
	}
}

// TestFrameWriterWaitsForBurst: packets written while a Cork is in leave at the burst's end, all in
// one system call.
func TestFrameWriterWaitsForBurst(t *testing.T) {
	lab := pkitest.Must(t)
	cTCP, sTCP := net.Pipe()
	rec := &recorder{Conn: cTCP}
	cfg := lab.ClientTLS()
	cfg.ServerName = "localhost"
	client := Client(rec, cfg)
	server := Server(sTCP, lab.ServerTLS())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var received atomic.Int32
	go ServeConn(ctx, server, ServeOptions{WriteTimeout: time.Second}, func(packet.Packet, ReplyFunc) { received.Add(1) })
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.writes = nil
	rec.mu.Unlock()

	var cork sockio.Cork
	w := newFrameWriter(client, time.Second, &cork)
	go w.run()
	defer w.stop()
	cork.Begin()
	for i := range 10 {
		if err := w.write(statusPacket(t, uint8(i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	early := len(rec.writes)
	rec.mu.Unlock()
	if early != 0 || received.Load() != 0 {
		t.Fatalf("%d writes before the burst ended", early)
	}
	cork.End()
	deadline := time.Now().Add(5 * time.Second)
	for received.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := received.Load(); n != 10 {
		t.Fatalf("server got %d of 10 packets", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.writes) != 1 {
		t.Fatalf("%d writes for one burst, want 1", len(rec.writes))
	}
}
