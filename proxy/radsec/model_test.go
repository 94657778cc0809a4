package radsec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"mxedge/proxy/packet"
)

// modelUpstream is an in-process RadSec peer that answers each request as a seeded random
// generator says: a reply, a duplicate reply, a reply that fails verification (then maybe a genuine
// one), a late reply, or none; and that may close the stream or stop reading (a stall).
type modelUpstream struct {
	nc  net.Conn
	rng *rand.Rand
	v11 bool       // RADIUS/1.1: replies carry the request's Token; a "wrong" one another Token
	mu  sync.Mutex // writes, and rng
	wg  sync.WaitGroup
}

func (m *modelUpstream) reply(p packet.Packet, secret string, delay time.Duration) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		time.Sleep(delay)
		b := packet.NewResponse(nil, p, packet.CodeAccessAccept)
		resp, err := b.Finish([]byte(secret), p.Authenticator())
		if err != nil {
			panic(err)
		}
		if m.v11 {
			token := p.Token()
			if secret != DefaultSecret {
				token += 1 << 8 // the same slot, a Token nobody waits for
			}
			packet.SetToken(resp, token)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.nc.SetWriteDeadline(time.Now().Add(time.Second))
		m.nc.Write(resp)
	}()
}

func (m *modelUpstream) intn(n int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rng.IntN(n)
}

func (m *modelUpstream) serve() {
	defer m.wg.Done()
	r := bufio.NewReader(m.nc)
	for {
		p, err := ReadPacket(r)
		if err != nil {
			return
		}
		ms := func(n int) time.Duration { return time.Duration(m.intn(n)) * time.Millisecond }
		switch a := m.intn(100); {
		case a < 2:
			m.nc.Close() // connection lost
			return
		case a < 3:
			return // stops reading: the client's writes stall
		case a < 5:
			// A blackhole: reads everything from now on, answers nothing.
			for {
				if _, err := ReadPacket(r); err != nil {
					return
				}
			}
		case a < 60:
			m.reply(p, DefaultSecret, ms(50))
		case a < 70:
			m.reply(p, DefaultSecret, ms(50))
			m.reply(p, DefaultSecret, ms(800)) // duplicate, maybe after the request timed out
		case a < 80:
			m.reply(p, "wrong", ms(20))
			if m.intn(2) == 0 {
				m.reply(p, DefaultSecret, ms(100))
			}
		case a < 90:
			m.reply(p, DefaultSecret, ms(1500)) // late: after most deadlines
		default:
			// no reply
		}
	}
}

// TestConnModel runs several hundred seeded schedules of a connection against modelUpstream, with
// requests queued beyond 256 identifiers, builds that fail, deadlines, Close and shutdown racing
// replies, and asserts that every accepted request's Handler runs exactly once, that Run returns
// with nothing in flight, and (synctest) that no goroutine is left behind.
func TestConnModel(t *testing.T) {
	schedules := 300
	if testing.Short() {
		schedules = 50
	}
	for seed := range schedules {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runConnModel(t, uint64(seed)) })
		})
	}
}

func runConnModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	client, server := net.Pipe()
	defer server.Close()
	v11 := seed%2 == 1
	up := &modelUpstream{nc: server, rng: rand.New(rand.NewPCG(seed, 2)), v11: v11}
	up.wg.Add(1)
	go up.serve()

	deadAfter := time.Duration(500+rng.IntN(2000)) * time.Millisecond
	statusInterval := time.Duration(200+rng.IntN(1000)) * time.Millisecond
	if rng.IntN(4) == 0 {
		statusInterval = deadAfter // a probe falls due in the pass that finds the connection dead
	}
	c := NewConn(client, ConnOptions{
		DeadAfter:      deadAfter,
		StatusInterval: statusInterval,
		StallAfter:     time.Duration(100+rng.IntN(500)) * time.Millisecond,
		Quarantine:     time.Duration(100+rng.IntN(2000)) * time.Millisecond,
		RADIUS11:       v11,
	})
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()

	n := 200 + rng.IntN(300)
	pace := rng.IntN(3) * 10 // 0: a burst beyond 256 identifiers, queued
	calls := make([]atomic.Int32, n)
	accepted := make([]bool, n)
	var senders sync.WaitGroup
	for g := range 4 {
		senders.Add(1)
		grng := rand.New(rand.NewPCG(seed, uint64(10+g)))
		go func() {
			defer senders.Done()
			for i := g; i < n; i += 4 {
				if pace > 0 {
					time.Sleep(time.Duration(grng.IntN(pace)) * time.Millisecond)
				}
				failBuild := grng.IntN(50) == 0
				deadline := time.Now().Add(time.Duration(100+grng.IntN(2000)) * time.Millisecond)
				var native BuildFunc
				if v11 && grng.IntN(2) == 0 {
					native = func(dst []byte, id uint8) (packet.Packet, error) {
						if failBuild {
							return nil, errors.New("model: build fails")
						}
						b := packet.New(dst, packet.CodeAccessRequest, 0, nil)
						b.AddString(packet.AttrUserName, fmt.Sprint("u", i))
						return b.Finish(nil, nil)
					}
				}
				err := c.ExchangeNative(func(dst []byte, id uint8) (packet.Packet, error) {
					if failBuild {
						return nil, errors.New("model: build fails")
					}
					b := packet.New(dst, packet.CodeAccessRequest, id, make([]byte, packet.AuthLen))
					b.AddMA()
					b.AddString(packet.AttrUserName, fmt.Sprint("u", i))
					return b.Finish([]byte(DefaultSecret), nil)
				}, native, deadline, func(resp packet.Packet, err error) {
					if calls[i].Add(1) != 1 {
						t.Errorf("request %d: handler called again (%v)", i, err)
					}
					if (resp == nil) == (err == nil) {
						t.Errorf("request %d: resp %v with err %v", i, resp != nil, err)
					}
					if failBuild && !errors.Is(err, ErrBuild) && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnDead) && !errors.Is(err, ErrTimeout) {
						t.Errorf("request %d: build failure reported as %v", i, err)
					}
				})
				accepted[i] = err == nil
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrBusy) {
					t.Errorf("request %d: Exchange: %v", i, err)
				}
			}
		}()
	}
	// Shutdown or an explicit Close at a random time, racing everything else.
	end := time.Duration(rng.IntN(4000)) * time.Millisecond
	closeInstead := rng.IntN(4) == 0
	go func() {
		select {
		case <-time.After(end):
		case <-c.Done():
		}
		if closeInstead {
			c.Close()
		}
		cancel()
	}()
	senders.Wait()
	// Run returns on shutdown, or earlier when the upstream closed, stalled or went silent.
	<-runErr
	cancel()
	for i := range n {
		if got := calls[i].Load(); accepted[i] && got != 1 {
			t.Errorf("request %d: handler ran %d times", i, got)
		} else if !accepted[i] && got != 0 {
			t.Errorf("request %d: refused by Exchange but handler ran %d times", i, got)
		}
	}
	if c.Inflight() != 0 {
		t.Errorf("%d in flight after Run returned", c.Inflight())
	}
	server.Close()
	up.wg.Wait()
}
