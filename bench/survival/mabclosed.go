package survival

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"mxedge/bench"
	"mxedge/proxy/packet"
	"mxedge/proxy/sockio"
)

// ClosedMABOptions configure one closed-loop MAB run of LoadMABClosed. Zero fields take the
// defaults noted.
type ClosedMABOptions struct {
	Addr, Secret string // the edge's authentication address and NAS secret. Required.
	// Concurrency is the number of requests kept in flight (closed loop: a request leaves when
	// an earlier one is answered or timed out). Required, 1..Sockets×256.
	Concurrency int
	// Sockets the requests are spread over, each read and written by one goroutine in batches
	// (recvmmsg/sendmmsg, proxy/sockio), so the generator costs a few µs of CPU per request and
	// leaves the cores to the edge. Default 4.
	Sockets int
	// Duration bounds the time during which new requests are sent; MaxRequests their number
	// (default 10,000,000). Duration is required.
	Duration    time.Duration
	MaxRequests int
	// Timeout is how long a request waits for its answer before it counts as a timeout and its
	// slot sends the next one. Default 1 s.
	Timeout time.Duration
	// Cached MACs are MAC(0, 0..Cached-1), answered with HitVLAN; the requests alternate between
	// one of them and one of as many MACs the cache does not hold (MAC(1, …)), answered with
	// MissVLAN. Cached is required.
	Cached            int
	HitVLAN, MissVLAN string
	// Scatter asks for the MACs in a random order (the same each run) rather than in the order of
	// their numbers: a site's clients arrive in no order of their addresses, and a table keyed by
	// MAC pays for that where numbered MACs only ever append.
	Scatter bool
}

func (o *ClosedMABOptions) setDefaults() error {
	if o.Sockets <= 0 {
		o.Sockets = 4
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 10_000_000
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	switch {
	case o.Addr == "" || o.Secret == "":
		return errors.New("survival: closed mab load: Addr and Secret are required")
	case o.Duration <= 0:
		return errors.New("survival: closed mab load: Duration must be positive (every load loop is bounded)")
	case o.Concurrency <= 0 || o.Concurrency > o.Sockets*256:
		return fmt.Errorf("survival: closed mab load: Concurrency %d is outside 1..%d (256 identifiers per socket)", o.Concurrency, o.Sockets*256)
	case o.Cached <= 0 || o.Cached > 1<<24:
		return errors.New("survival: closed mab load: Cached must be in 1..2^24")
	}
	return nil
}

// macNames is one MAB client as its requests carry it: User-Name = User-Password (the MAC without
// separators) and Calling-Station-Id (hyphenated, upper case), built once so that a request
// costs no formatting.
type macNames struct{ user, station []byte }

func buildMACNames(set uint8, n int) []macNames {
	out := make([]macNames, n)
	for i := range out {
		m := MAC(set, uint32(i))
		out[i] = macNames{
			user:    []byte(strings.ReplaceAll(m, ":", "")),
			station: []byte(strings.ToUpper(strings.ReplaceAll(m, ":", "-"))),
		}
	}
	return out
}

// closedSlot is one request in flight on a socket; its index is the request's identifier.
type closedSlot struct {
	buf    []byte
	auth   [packet.AuthLen]byte
	sentAt time.Time
	hit    bool
	busy   bool
}

// closedSocket is one generator socket and the slots its goroutine owns.
type closedSocket struct {
	udp   *sockio.UDP
	conn  *net.UDPConn
	cork  sockio.Cork
	out   *sockio.Sender
	slots []closedSlot
	rng   *mrand.Rand
	next  int // the next MAC index this socket asks for

	sent, answered, timeouts, stale int
	errs                            map[string]int
	lat                             []time.Duration
	sendErr                         error
}

// LoadMABClosed runs a closed loop of MAB Access-Requests against an edge with a generator built
// to be cheap: each socket's goroutine reads every answer queued in one recvmmsg, verifies it
// (Response Authenticator, Message-Authenticator, Access-Accept, the VLAN the cache or the
// default gives), and sends the next request of each answered slot in one sendmmsg. The result
// is a bench.LoadResult, so it reads like bench.Load's.
func LoadMABClosed(ctx context.Context, o ClosedMABOptions) (bench.LoadResult, error) {
	if err := o.setDefaults(); err != nil {
		return bench.LoadResult{}, err
	}
	to, err := netip.ParseAddrPort(o.Addr)
	if err != nil {
		return bench.LoadResult{}, fmt.Errorf("survival: closed mab load: %w", err)
	}
	hits, misses := buildMACNames(0, o.Cached), buildMACNames(1, o.Cached)
	if o.Scatter {
		r := mrand.New(mrand.NewPCG(1, 2))
		for _, ns := range [][]macNames{hits, misses} {
			r.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		}
	}
	secret := []byte(o.Secret)
	socks := make([]*closedSocket, o.Sockets)
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
			return bench.LoadResult{}, fmt.Errorf("survival: closed mab load: %w", err)
		}
		_ = c.SetReadBuffer(1 << 20)
		u, err := sockio.NewUDP(c)
		if err != nil {
			c.Close()
			return bench.LoadResult{}, fmt.Errorf("survival: closed mab load: %w", err)
		}
		s := &closedSocket{udp: u, conn: c, errs: map[string]int{},
			rng:  mrand.New(mrand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano()))),
			next: i * (o.Cached / o.Sockets)}
		s.out = sockio.NewSender(u, &s.cork, func(_ netip.AddrPort, err error) { s.sendErr = err })
		// Concurrency spread over the sockets; identifiers 0..n-1 on each.
		n := o.Concurrency / o.Sockets
		if i < o.Concurrency%o.Sockets {
			n++
		}
		s.slots = make([]closedSlot, n)
		for k := range s.slots {
			s.slots[k].buf = make([]byte, 0, 256)
		}
		socks[i] = s
	}
	var mu sync.Mutex // guards tickets, the requests still to send
	tickets := o.MaxRequests
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if tickets <= 0 {
			return false
		}
		tickets--
		return true
	}
	start := time.Now()
	stopAt := start.Add(o.Duration)
	var wg sync.WaitGroup
	for _, s := range socks {
		wg.Go(func() { s.run(ctx, &o, to, secret, hits, misses, stopAt, take) })
	}
	wg.Wait()
	res := bench.LoadResult{Elapsed: time.Since(start), Errors: map[string]int{}}
	var lat []time.Duration
	for _, s := range socks {
		res.Sent += s.sent
		res.Answered += s.answered
		res.Timeouts += s.timeouts
		res.Stale += s.stale
		for k, v := range s.errs {
			res.Errors[k] += v
		}
		lat = append(lat, s.lat...)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = Percentile(lat, 0.50)
		res.P99 = Percentile(lat, 0.99)
		res.Max = lat[len(lat)-1]
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("survival: closed mab load: %w", err)
	}
	return res, nil
}

// run is one socket's loop: fill every slot, then answer → verify → next request, until stopAt,
// then wait (at most Timeout) for the answers still due.
func (s *closedSocket) run(ctx context.Context, o *ClosedMABOptions, to netip.AddrPort, secret []byte,
	hits, misses []macNames, stopAt time.Time, take func() bool) {
	batch := sockio.NewBatch(64, packet.MaxLen+1)
	s.cork.Begin()
	for id := range s.slots {
		if take() {
			s.send(id, o, to, secret, hits, misses)
		}
	}
	s.cork.End()
	inFlight := func() bool {
		for i := range s.slots {
			if s.slots[i].busy {
				return true
			}
		}
		return false
	}
	lastScan := time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		sending := now.Before(stopAt)
		if !sending && !inFlight() {
			return
		}
		// Wake at least every 50 ms to find timed-out slots.
		_ = s.conn.SetReadDeadline(now.Add(50 * time.Millisecond))
		err := s.udp.Read(batch)
		now = time.Now()
		sending = now.Before(stopAt)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			s.errs[bench.ErrKindIO]++
			if errors.Is(err, net.ErrClosed) {
				return
			}
		}
		s.cork.Begin()
		for _, d := range batch.Datagrams() {
			id, ok := s.answer(d.B, now, o, secret)
			if ok && sending && take() {
				s.send(id, o, to, secret, hits, misses)
			}
		}
		if now.Sub(lastScan) >= 50*time.Millisecond {
			lastScan = now
			for id := range s.slots {
				sl := &s.slots[id]
				if sl.busy && now.Sub(sl.sentAt) > o.Timeout {
					sl.busy = false
					s.timeouts++
					if sending && take() {
						s.send(id, o, to, secret, hits, misses)
					}
				}
			}
		}
		s.cork.End()
		if s.sendErr != nil {
			s.errs[bench.ErrKindIO]++
			s.sendErr = nil
		}
	}
}

// send builds the next request into slot id and queues it on the socket's Sender.
func (s *closedSocket) send(id int, o *ClosedMABOptions, to netip.AddrPort, secret []byte, hits, misses []macNames) {
	sl := &s.slots[id]
	i := s.next
	s.next++
	m := &hits[(i>>1)%len(hits)]
	sl.hit = i&1 == 0
	if !sl.hit {
		m = &misses[(i>>1)%len(misses)]
	}
	binaryRand(sl.auth[:], s.rng)
	b := packet.New(sl.buf[:0], packet.CodeAccessRequest, uint8(id), sl.auth[:])
	b.AddMA()
	b.Add(packet.AttrUserName, m.user)
	var pw [32]byte
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(pw[:0], m.user, secret, sl.auth[:]))
	b.Add(packet.AttrCallingStationID, m.station)
	b.AddUint32(packet.AttrServiceType, 10) // Call-Check: RFC 2865 §5.6, the Cisco MAB convention
	p, err := b.Finish(secret, nil)
	if err != nil {
		s.errs[bench.ErrKindBuild]++
		return
	}
	sl.buf = p[:0]
	sl.busy = true
	sl.sentAt = time.Now()
	s.sent++
	s.out.Send(p, to)
}

// answer verifies one datagram against the slot its identifier names; ok says the slot is free
// for the next request.
func (s *closedSocket) answer(raw []byte, now time.Time, o *ClosedMABOptions, secret []byte) (id int, ok bool) {
	resp, err := packet.Parse(raw)
	if err != nil {
		s.errs[bench.ErrKindMalformed]++
		return 0, false
	}
	id = int(resp.ID())
	if id >= len(s.slots) || !s.slots[id].busy {
		s.stale++ // the answer to a request that timed out
		return 0, false
	}
	sl := &s.slots[id]
	if !packet.CheckResponseAuthenticator(resp, sl.auth[:], secret) {
		s.stale++ // an identifier reused after a timeout: the older request's answer
		return 0, false
	}
	sl.busy = false
	want := o.MissVLAN
	if sl.hit {
		want = o.HitVLAN
	}
	v, _ := resp.Attr(packet.AttrTunnelPrivateGroupID)
	if len(v) > 0 && v[0] <= 0x1f { // RFC 2868 §3.6: an optional tag octet
		v = v[1:]
	}
	switch {
	case packet.CheckResponseMA(resp, sl.auth[:], secret) != packet.MAValid:
		s.errs[bench.ErrKindMA]++
	case resp.Code() != packet.CodeAccessAccept:
		s.errs[bench.ErrKindReject]++
	case !bytes.Equal(v, []byte(want)):
		s.errs["wrong-vlan"]++
	default:
		s.answered++
		s.lat = append(s.lat, now.Sub(sl.sentAt))
	}
	return id, true
}

// binaryRand fills b (16 octets) from rng: a Request Authenticator unique per request (RFC 2865
// §3), so that no request is mistaken for a retransmission of another.
func binaryRand(b []byte, rng *mrand.Rand) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}
