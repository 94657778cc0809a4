package survival

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"mxedge/bench"
	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// PacedMABOptions configure one open-loop run of LoadMABPaced. Zero fields take the defaults
// noted.
type PacedMABOptions struct {
	Addr, Secret string // the edge's authentication address and NAS secret. Required.
	// Rate is the offered rate in requests/s and Duration the sending window: requests leave on
	// a fixed schedule whatever the answers do (open loop). Both required.
	Rate     int
	Duration time.Duration
	// Sockets the requests are spread over, each with one goroutine that sends what is due every
	// Tick in one sendmmsg and reads answers in recvmmsg batches in between. A socket reuses an
	// identifier every 256 of its requests, so Rate/Sockets×Drain must stay well below 256 for a
	// late answer to be matched: an answer later than that counts as lost. Default 8 (at
	// 40,000/s, an identifier every 51 ms).
	Sockets int
	// Tick is the sending period (default 1 ms): the schedule is kept to within a tick.
	Tick time.Duration
	// Drain is how long answers are awaited after the last send. Default 1 s.
	Drain time.Duration
	// LateAfter is the latency above which an answer counts as late. Default 2 ms.
	LateAfter time.Duration
	// Cached, HitVLAN and MissVLAN as in ClosedMABOptions: the requests alternate between a
	// cached MAC and one the cache does not hold. Cached is required.
	Cached            int
	HitVLAN, MissVLAN string
}

func (o *PacedMABOptions) setDefaults() error {
	if o.Sockets <= 0 {
		o.Sockets = 8
	}
	if o.Tick <= 0 {
		o.Tick = time.Millisecond
	}
	if o.Drain <= 0 {
		o.Drain = time.Second
	}
	if o.LateAfter <= 0 {
		o.LateAfter = 2 * time.Millisecond
	}
	switch {
	case o.Addr == "" || o.Secret == "":
		return errors.New("survival: paced mab load: Addr and Secret are required")
	case o.Rate <= 0 || o.Duration <= 0:
		return errors.New("survival: paced mab load: Rate and Duration must be positive (every load loop is bounded)")
	case o.Cached <= 0 || o.Cached > 1<<24:
		return errors.New("survival: paced mab load: Cached must be in 1..2^24")
	case o.Rate*int(o.Duration/time.Millisecond)/1000 > 20_000_000:
		return errors.New("survival: paced mab load: more than 20,000,000 requests")
	}
	return nil
}

// PacedMABResult is what one open-loop run saw.
type PacedMABResult struct {
	Offered  int           // requests/s asked for
	Sent     int           // requests sent
	Window   time.Duration // first to last send
	MaxLag   time.Duration // worst lag of a tick behind its schedule (generator saturation)
	Answered int           // valid Access-Accepts with the expected VLAN
	Wrong    int           // answers with the wrong code, VLAN or Message-Authenticator, or malformed
	IOErrors int           // socket errors other than the read deadline
	Stale    int           // answers that match no request in flight
	Late     int           // answered, but after LateAfter
	Lost     int           // no answer before its identifier was reused or the drain ended
	P50, P99 time.Duration // latency, send to read
	Max      time.Duration
}

// SendRate is the achieved offered rate.
func (r PacedMABResult) SendRate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Window.Seconds()
}

// AnswerRate is answers per second over the sending window.
func (r PacedMABResult) AnswerRate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Window.Seconds()
}

// pacedSocket is one generator socket of LoadMABPaced: 256 slots, one per identifier, reused in
// turn.
type pacedSocket struct {
	closedSocket
	lost        int
	maxLag      time.Duration
	first, last time.Time
}

// LoadMABPaced offers MAB requests at a fixed rate (open loop) with a generator built to be cheap
// (recvmmsg/sendmmsg, proxy/sockio), so that the rate reached is the edge's, not the generator's,
// and waits Drain for the answers. Each answer is verified like LoadMABClosed's.
func LoadMABPaced(ctx context.Context, o PacedMABOptions) (PacedMABResult, error) {
	if err := o.setDefaults(); err != nil {
		return PacedMABResult{}, err
	}
	to, err := netip.ParseAddrPort(o.Addr)
	if err != nil {
		return PacedMABResult{}, fmt.Errorf("survival: paced mab load: %w", err)
	}
	hits, misses := buildMACNames(0, o.Cached), buildMACNames(1, o.Cached)
	co := ClosedMABOptions{Addr: o.Addr, Secret: o.Secret, HitVLAN: o.HitVLAN, MissVLAN: o.MissVLAN}
	secret := []byte(o.Secret)
	socks := make([]*pacedSocket, o.Sockets)
	defer func() {
		for _, s := range socks {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	for i := range socks {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return PacedMABResult{}, fmt.Errorf("survival: paced mab load: %w", err)
		}
		_ = c.SetReadBuffer(1 << 20)
		u, err := sockio.NewUDP(c)
		if err != nil {
			c.Close()
			return PacedMABResult{}, fmt.Errorf("survival: paced mab load: %w", err)
		}
		s := &pacedSocket{closedSocket: closedSocket{udp: u, conn: c, errs: map[string]int{},
			rng:  mrand.New(mrand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano()))),
			next: i * (o.Cached / o.Sockets), slots: make([]closedSlot, 256)}}
		s.out = sockio.NewSender(u, &s.cork, func(_ netip.AddrPort, err error) { s.sendErr = err })
		for k := range s.slots {
			s.slots[k].buf = make([]byte, 0, 256)
		}
		socks[i] = s
	}
	start := time.Now()
	total := int(float64(o.Rate) * o.Duration.Seconds())
	var wg sync.WaitGroup
	for i, s := range socks {
		// Socket i sends requests i, i+Sockets, … of the schedule: request k is due at k/Rate.
		n := total / o.Sockets
		if i < total%o.Sockets {
			n++
		}
		wg.Go(func() { s.run(ctx, &o, &co, to, secret, hits, misses, start, i, n) })
	}
	wg.Wait()
	res := PacedMABResult{Offered: o.Rate}
	var lat []time.Duration
	var first, last time.Time
	for _, s := range socks {
		res.Sent += s.sent
		res.Answered += s.answered
		res.Stale += s.stale
		res.Lost += s.lost
		res.MaxLag = max(res.MaxLag, s.maxLag)
		for k, v := range s.errs {
			if k == bench.ErrKindIO {
				res.IOErrors += v
			} else {
				res.Wrong += v
			}
		}
		lat = append(lat, s.lat...)
		if !s.first.IsZero() && (first.IsZero() || s.first.Before(first)) {
			first = s.first
		}
		if s.last.After(last) {
			last = s.last
		}
	}
	res.Window = last.Sub(first)
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50, res.P99, res.Max = Percentile(lat, 0.50), Percentile(lat, 0.99), lat[len(lat)-1]
		for _, l := range lat {
			if l > o.LateAfter {
				res.Late++
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("survival: paced mab load: %w", err)
	}
	return res, nil
}

// run sends socket i's n requests on schedule (the k-th of the socket is request i+k×Sockets of
// the run, due at start + that/Rate), reading answers between ticks, then drains.
func (s *pacedSocket) run(ctx context.Context, o *PacedMABOptions, co *ClosedMABOptions, to netip.AddrPort, secret []byte,
	hits, misses []macNames, start time.Time, i, n int) {
	batch := sockio.NewBatch(64, packet.MaxLen+1)
	per := time.Duration(float64(time.Second) * float64(o.Sockets) / float64(o.Rate))
	due := func(k int) time.Time {
		return start.Add(time.Duration(float64(i)*float64(time.Second)/float64(o.Rate)) + time.Duration(k)*per)
	}
	k, id := 0, 0
	var end time.Time
	for ctx.Err() == nil {
		now := time.Now()
		if k < n {
			s.cork.Begin()
			for ; k < n && !due(k).After(now); k++ {
				if lag := now.Sub(due(k)); lag > s.maxLag {
					s.maxLag = lag
				}
				if s.slots[id].busy {
					s.lost++ // still unanswered when its identifier comes round again
					s.slots[id].busy = false
				}
				s.send(id, co, to, secret, hits, misses)
				if s.first.IsZero() {
					s.first = now
				}
				s.last = now
				id = (id + 1) % len(s.slots)
			}
			s.cork.End()
			if s.sendErr != nil {
				s.errs[bench.ErrKindIO]++
				s.sendErr = nil
			}
			if k == n {
				end = now.Add(o.Drain)
			}
		}
		// Every tick, what is due leaves in one batch per socket.
		wake := now.Add(o.Tick)
		if k < n && due(k).After(wake) {
			wake = due(k)
		} else if k == n && !now.Before(end) {
			break
		}
		_ = s.conn.SetReadDeadline(wake)
		// Read until the next send is due.
		for {
			err := s.udp.Read(batch)
			now := time.Now()
			for _, d := range batch.Datagrams() {
				s.answer(d.B, now, co, secret)
			}
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					s.errs[bench.ErrKindIO]++
				}
				break
			}
			if !now.Before(wake) {
				break
			}
		}
		if k == n && s.allAnswered() {
			break
		}
	}
	for id := range s.slots {
		if s.slots[id].busy {
			s.lost++
		}
	}
}

func (s *pacedSocket) allAnswered() bool {
	for i := range s.slots {
		if s.slots[i].busy {
			return false
		}
	}
	return true
}
