package survival

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mxedge/proxy/packet"
)

// MABLoadOptions configure one open-loop MAB run. Zero fields take the defaults noted.
type MABLoadOptions struct {
	Addr, Secret string // the edge's authentication address and NAS secret. Required.
	// Rate is the offered rate in requests/s and Duration the sending window: Rate×Duration
	// requests are sent on a fixed schedule, whatever the answers do (open loop). Required.
	Rate     int
	Duration time.Duration
	// MaxRequests bounds Rate×Duration. Default 1,000,000.
	MaxRequests int
	// Sockets spread the requests over source ports, round robin. Each socket reuses an
	// identifier only every 256 requests, so Rate/Sockets×Drain must stay below 256 for a late
	// answer to be matched. Default 128.
	Sockets int
	// Cached is how many MACs the cache holds (MAC(0, 0..Cached-1)); HitRatio of the requests
	// ask for one of them, the rest for MACs the cache does not hold. Defaults 0.5 for HitRatio.
	Cached   int
	HitRatio float64
	// HitVLAN and MissVLAN are the VLANs the answers must carry.
	HitVLAN, MissVLAN string
	// Drain is how long answers are awaited after the last request. Default 1 s.
	Drain time.Duration
	// LateAfter is the latency above which an answer counts as late. Default 2 ms.
	LateAfter time.Duration
	// Seed makes the hit/miss sequence reproducible.
	Seed uint64
}

func (o *MABLoadOptions) setDefaults() error {
	if o.Addr == "" || o.Secret == "" || o.Rate <= 0 || o.Duration <= 0 {
		return errors.New("survival: mab load: Addr, Secret, Rate and Duration are required")
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 1_000_000
	}
	if o.Sockets <= 0 {
		o.Sockets = 128
	}
	if o.HitRatio == 0 {
		o.HitRatio = 0.5
	}
	if o.Cached <= 0 {
		o.HitRatio = -1 // no cached MACs: every request is a miss
	}
	if o.Drain <= 0 {
		o.Drain = time.Second
	}
	if o.LateAfter <= 0 {
		o.LateAfter = 2 * time.Millisecond
	}
	return nil
}

// MABResult is what one open-loop run saw.
type MABResult struct {
	Offered  int           // requests/s asked for
	Sent     int           // requests sent
	Window   time.Duration // first to last send
	MaxLag   time.Duration // worst delay of a send behind its schedule (generator saturation)
	Answered int           // valid Access-Accepts with the expected VLAN
	Wrong    int           // valid answers with the wrong code or VLAN
	Invalid  int           // datagrams that match no request or do not verify
	Late     int           // answered, but after LateAfter
	Lost     int           // no valid answer within Drain of the last send
	// AnswerWindow is from the first send to the last answer.
	AnswerWindow time.Duration
	// Latency from the send to the kernel's receive timestamp of the answer (SO_TIMESTAMPNS), so
	// that the generator's own scheduling delays on a busy host are not charged to the edge.
	P50, P99, P999, Max time.Duration
	// P99User is the p99 as the generator's reader goroutines saw it (kernel → user space
	// delays included), for comparison.
	P99User time.Duration
}

// SendRate is the achieved offered rate.
func (r MABResult) SendRate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Sent-1) / r.Window.Seconds()
}

// AnswerRate is answers per second over the answer window.
func (r MABResult) AnswerRate() float64 {
	if r.AnswerWindow <= 0 {
		return 0
	}
	return float64(r.Answered) / r.AnswerWindow.Seconds()
}

// mabRun is the shared state of one run. Everything the readers read is written before the
// request's slot is published, or is immutable after setup.
type mabRun struct {
	o      MABLoadOptions
	secret []byte
	start  time.Time
	reqs   []packet.Packet // immutable after setup
	auths  []byte          // 16 octets per request, immutable
	want   []bool          // true: the cached VLAN is expected
	sentAt []atomic.Int64  // ns after start
	lat    []atomic.Int64  // latency ns + 1 at the kernel's receive timestamp; 0 = unanswered
	latU   []atomic.Int64  // latency ns + 1 when the reader saw the answer
	slots  [][256]atomic.Int32
	last   atomic.Int64 // ns after start of the latest answer
	wrong  atomic.Int64
	bad    atomic.Int64
}

// LoadMAB runs one paced open-loop MAB load against an edge and waits for the answers.
func LoadMAB(ctx context.Context, o MABLoadOptions) (MABResult, error) {
	if err := o.setDefaults(); err != nil {
		return MABResult{}, err
	}
	n := int(float64(o.Rate) * o.Duration.Seconds())
	n = max(1, min(n, o.MaxRequests))
	r := &mabRun{
		o: o, secret: []byte(o.Secret),
		reqs: make([]packet.Packet, n), auths: make([]byte, n*packet.AuthLen), want: make([]bool, n),
		sentAt: make([]atomic.Int64, n), lat: make([]atomic.Int64, n), latU: make([]atomic.Int64, n),
		slots: make([][256]atomic.Int32, o.Sockets),
	}
	if err := r.build(n); err != nil {
		return MABResult{}, err
	}
	conns := make([]*net.UDPConn, o.Sockets)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	raddr, err := net.ResolveUDPAddr("udp", o.Addr)
	if err != nil {
		return MABResult{}, fmt.Errorf("survival: mab load: %w", err)
	}
	for i := range conns {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return MABResult{}, fmt.Errorf("survival: mab load: %w", err)
		}
		_ = c.SetReadBuffer(1 << 20)
		conns[i] = c
		if err := rxTimestamps(c); err != nil {
			return MABResult{}, err
		}
	}

	r.start = time.Now()
	var wg sync.WaitGroup
	for s, c := range conns {
		wg.Go(func() { r.read(s, c) })
	}
	res := MABResult{Offered: o.Rate}
	res.Sent, res.MaxLag, res.Window = r.send(ctx, conns)
	// Wait for the answers, then unblock the readers.
	select {
	case <-ctx.Done():
	case <-time.After(o.Drain):
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("survival: mab load: %w", err)
	}

	lats := make([]time.Duration, 0, res.Sent)
	user := make([]time.Duration, 0, res.Sent)
	for i := range res.Sent {
		if l := r.lat[i].Load(); l > 0 {
			d := time.Duration(l - 1)
			lats = append(lats, d)
			user = append(user, time.Duration(r.latU[i].Load()-1))
			if d > o.LateAfter {
				res.Late++
			}
		}
	}
	slices.Sort(lats)
	slices.Sort(user)
	res.P99User = Percentile(user, 0.99)
	res.Answered = len(lats)
	res.Wrong, res.Invalid = int(r.wrong.Load()), int(r.bad.Load())
	res.Lost = res.Sent - res.Answered - res.Wrong
	res.AnswerWindow = time.Duration(r.last.Load())
	res.P50, res.P99, res.P999 = Percentile(lats, 0.50), Percentile(lats, 0.99), Percentile(lats, 0.999)
	if len(lats) > 0 {
		res.Max = lats[len(lats)-1]
	}
	return res, nil
}

// build signs every request before the clock starts, so the generator only sends during the run.
func (r *mabRun) build(n int) error {
	if _, err := rand.Read(r.auths); err != nil {
		return fmt.Errorf("survival: mab load: %w", err)
	}
	rng := mrand.New(mrand.NewPCG(r.o.Seed, 0x6d6162))
	for i := range n {
		var mac string
		if rng.Float64() < r.o.HitRatio {
			r.want[i] = true
			mac = MAC(0, uint32(rng.IntN(r.o.Cached)))
		} else {
			mac = MAC(1, uint32(rng.IntN(1<<24)))
		}
		// The k-th request of a socket gets identifier k mod 256 (RFC 2865 §3).
		p, err := MABRequest(nil, uint8(i/r.o.Sockets), r.auth(i), mac, r.secret)
		if err != nil {
			return err
		}
		r.reqs[i] = p
	}
	return nil
}

func (r *mabRun) auth(i int) []byte { return r.auths[i*packet.AuthLen : (i+1)*packet.AuthLen] }

// send paces the requests: request i is due at start + i/Rate. When the sender wakes late it
// sends everything that is due at once, so the offered rate holds on average and the lag is
// reported. It stops early, bounded, if it falls more than Duration behind.
func (r *mabRun) send(ctx context.Context, conns []*net.UDPConn) (sent int, maxLag, window time.Duration) {
	n := len(r.reqs)
	per := float64(time.Second) / float64(r.o.Rate)
	giveUp := 2*r.o.Duration + time.Second
	var first time.Duration
	for i := 0; i < n; {
		now := time.Since(r.start)
		if now > giveUp || ctx.Err() != nil {
			break
		}
		due := min(n, int(float64(now)/per)+1)
		for ; i < due; i++ {
			s := i % len(conns)
			t := time.Since(r.start)
			if i == 0 {
				first = t
			}
			if lag := t - time.Duration(float64(i)*per); lag > maxLag {
				maxLag = lag
			}
			r.sentAt[i].Store(int64(t))
			r.slots[s][r.reqs[i].ID()].Store(int32(i + 1))
			if _, err := conns[s].Write(r.reqs[i]); err == nil {
				sent = i + 1
			}
			window = t - first
		}
		if i < n {
			if wait := time.Duration(float64(i)*per) - time.Since(r.start); wait > 0 {
				time.Sleep(wait)
			}
		}
	}
	return sent, maxLag, window
}

// read matches answers on socket s to their requests until its read deadline passes.
func (r *mabRun) read(s int, c *net.UDPConn) {
	buf := make([]byte, packet.MaxLen)
	oob := make([]byte, 128)
	for {
		n, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isTimeout(err) {
				return
			}
			continue // e.g. ICMP port unreachable surfacing as ECONNREFUSED
		}
		atU := int64(time.Since(r.start))
		at := atU
		if rx, ok := rxTime(oob[:oobn]); ok {
			at = int64(rx.Sub(r.start))
		}
		resp, err := packet.Parse(buf[:n])
		if err != nil {
			r.bad.Add(1)
			continue
		}
		i := int(r.slots[s][resp.ID()].Load()) - 1
		if i < 0 {
			r.bad.Add(1)
			continue
		}
		vlan, err := CheckMABAnswer(resp, r.auth(i), r.secret)
		if err != nil {
			r.bad.Add(1) // includes answers to an older request whose identifier was reused
			continue
		}
		want := r.o.MissVLAN
		if r.want[i] {
			want = r.o.HitVLAN
		}
		if vlan != want {
			r.wrong.Add(1)
			continue
		}
		sent := r.sentAt[i].Load()
		if r.lat[i].CompareAndSwap(0, max(0, at-sent)+1) {
			r.latU[i].Store(atU - sent + 1)
			for {
				l := r.last.Load()
				if at <= l || r.last.CompareAndSwap(l, at) {
					break
				}
			}
		}
	}
}

// rxTimestamps asks the kernel to stamp every datagram c receives (SO_TIMESTAMPNS, socket(7)).
func rxTimestamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("survival: timestamps: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return fmt.Errorf("survival: timestamps: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("survival: timestamps: %w", serr)
	}
	return nil
}

// rxTime extracts the SCM_TIMESTAMPNS control message (a struct timespec, CLOCK_REALTIME).
func rxTime(oob []byte) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Percentile returns the q-quantile (nearest rank) of sorted, 0 when empty.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
