package peertest

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkRadsecproxyAnchor measures the reference proxy the way bench/
// will: a pipelined UDP load generator → radsecproxy → RadSec → FreeRADIUS,
// reporting req/s and each process's CPU time per request from /proc. It
// validates CPUTime and gives an anchor figure; the comparison with mxedge
// lives in bench/.
//
//	go test -run '^$' -bench RadsecproxyAnchor -benchtime 20000x ./edge/peertest/
func BenchmarkRadsecproxyAnchor(b *testing.B) {
	Require(b, "freeradius", "radsecproxy")
	certs := NewCerts(b)
	radsec, udp := FreePort(b), FreePort(b)
	fr := StartFreeRADIUS(b, FreeRADIUSOptions{
		RadSecAddr: loop(radsec),
		ServerCert: certs.ServerCert, ServerKey: certs.ServerKey, CA: certs.CA,
		Users:       []User{{Name: "alice", Password: "secret"}},
		MaxRequests: 1 << 20,
	})
	rp := StartRadsecproxy(b, RadsecproxyOptions{
		ListenUDP: loop(udp), Upstream: loop(radsec),
		Clients: []Client{{Addr: "127.0.0.1", Secret: "bench"}},
		Cert:    certs.ServerCert, Key: certs.ServerKey, CA: certs.CA, LogLevel: 1,
	})
	conn, err := net.Dial("udp", loop(udp))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	g := newLoadGen(conn, "bench", 64)
	// Warm up: the TLS connection to the upstream is opened lazily.
	g.run(200)
	if g.ok == 0 {
		b.Fatalf("no reply during warm-up\n%s\n%s", rp.LogTail(20), fr.LogTail(20))
	}
	g.ok, g.lost = 0, 0 // the reader has stopped (drain)
	g.start()
	pCPU0, _ := rp.CPUTime()
	uCPU0, _ := fr.CPUTime()
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		g.send()
		n++
	}
	g.drain()
	elapsed := time.Since(start)
	pCPU1, _ := rp.CPUTime()
	uCPU1, _ := fr.CPUTime()
	if g.lost > n/100 {
		b.Errorf("%d of %d requests lost", g.lost, n)
	}
	b.ReportMetric(float64(g.ok)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64((pCPU1-pCPU0).Microseconds())/float64(n), "proxy-cpu-µs/req")
	b.ReportMetric(float64((uCPU1-uCPU0).Microseconds())/float64(n), "upstream-cpu-µs/req")
}

// loadGen keeps up to window Access-Requests in flight on one UDP socket.
type loadGen struct {
	conn   net.Conn
	secret string
	slots  chan byte // free RADIUS IDs

	mu     sync.Mutex
	sentAt [256]time.Time
	ok     int
	lost   int
	stop   chan struct{}
	done   chan struct{}
}

func newLoadGen(conn net.Conn, secret string, window int) *loadGen {
	g := &loadGen{conn: conn, secret: secret, slots: make(chan byte, 256)}
	for i := range window {
		g.slots <- byte(i)
	}
	g.start()
	return g
}

func (g *loadGen) start() {
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go g.read()
}

// run sends n requests and waits for them.
func (g *loadGen) run(n int) {
	for range n {
		g.send()
	}
	g.drain()
}

// send waits for a free ID and sends one PAP Access-Request (RFC 2865 §4.1).
func (g *loadGen) send() {
	id := <-g.slots
	var auth [16]byte
	_, _ = rand.Read(auth[:])
	pkt := make([]byte, 20, 64)
	pkt[0] = 1 // Access-Request
	pkt[1] = id
	copy(pkt[4:20], auth[:])
	pkt = append(pkt, 1, byte(2+len("alice")))
	pkt = append(pkt, "alice"...)
	// User-Password (RFC 2865 §5.2): one 16-octet block.
	h := md5.Sum(append([]byte(g.secret), auth[:]...))
	var pw [16]byte
	copy(pw[:], "secret")
	for i := range pw {
		pw[i] ^= h[i]
	}
	pkt = append(pkt, 2, 18)
	pkt = append(pkt, pw[:]...)
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	g.mu.Lock()
	g.sentAt[id] = time.Now()
	g.mu.Unlock()
	_, _ = g.conn.Write(pkt)
}

// read collects replies and frees the IDs of requests older than 2 s.
func (g *loadGen) read() {
	defer close(g.done)
	buf := make([]byte, 4096)
	for {
		_ = g.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := g.conn.Read(buf)
		g.mu.Lock()
		if err == nil && n >= 20 && !g.sentAt[buf[1]].IsZero() {
			g.sentAt[buf[1]] = time.Time{}
			if buf[0] == 2 { // Access-Accept
				g.ok++
			} else {
				g.lost++
			}
			g.slots <- buf[1]
		}
		now := time.Now()
		for id, at := range g.sentAt {
			if !at.IsZero() && now.Sub(at) > 2*time.Second {
				g.sentAt[id] = time.Time{}
				g.lost++
				g.slots <- byte(id)
			}
		}
		g.mu.Unlock()
		select {
		case <-g.stop:
			return
		default:
		}
	}
}

// drain waits until no request is in flight, then stops the reader.
func (g *loadGen) drain() {
	for {
		g.mu.Lock()
		busy := false
		for _, at := range g.sentAt {
			if !at.IsZero() {
				busy = true
				break
			}
		}
		g.mu.Unlock()
		if !busy {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(g.stop)
	<-g.done
}
