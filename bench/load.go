package bench

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxedge/proxy/packet"
)

// LoadOptions configure one closed-loop load run.
type LoadOptions struct {
	// Target is the proxy's RADIUS authentication address, "127.0.0.1:PORT". Required.
	Target string
	// Secret is the NAS shared secret the target knows us by. Required.
	Secret string
	// User and Password go into User-Name and User-Password (RFC 2865 §5.1, §5.2), so the proxy has
	// to re-encrypt the password for its upstream. Defaults "alice" and "secret".
	User, Password string
	// Concurrency is the number of workers; each has its own UDP socket and one request in flight
	// (closed loop). Default 16.
	Concurrency int
	// Requests bounds the number of requests sent. Required (> 0).
	Requests int
	// Duration bounds the time during which new requests are sent. Required (> 0).
	Duration time.Duration
	// Timeout is how long a worker waits for a reply before counting a timeout and moving on.
	// Default 2s.
	Timeout time.Duration
	// MABClients > 0 sends MAB instead of PAP: Aruba/HP style, User-Name = User-Password =
	// Calling-Station-Id = a MAC (MABMAC(i)), Service-Type = Call-Check (RFC 2865 §5.6), the MACs
	// taken in turn from this many. The proxy then classifies, learns and publishes each decision.
	MABClients int
	// MAC names the i-th MAB client; default MABMAC.
	MAC func(i int) string
	// Rate > 0 paces the requests: the i-th request of the run leaves no earlier than i/Rate
	// seconds after the start, whichever worker sends it (a soak at a fixed rate). 0: as fast as
	// the workers get answers.
	Rate float64
	// Accounting sends Accounting-Requests instead (acctload.go): each worker cycles its sessions
	// through Start, Interim-Update and Stop with a Framed-IP-Address, and every reply must be a
	// verified Accounting-Response. Target is then the accounting address.
	Accounting bool
}

// MABMAC is the i-th MAC the load generator sends in MAB mode, 02:00:5e:xx:xx:xx in the
// hyphenated form switches use.
func MABMAC(i int) string {
	return fmt.Sprintf("02-00-5E-%02X-%02X-%02X", byte(i>>16), byte(i>>8), byte(i))
}

// Validate checks the options before any socket is opened.
func (o *LoadOptions) Validate() error {
	switch {
	case o.Target == "":
		return errors.New("bench: load: Target is required")
	case o.Secret == "":
		return errors.New("bench: load: Secret is required")
	case o.Requests <= 0:
		return errors.New("bench: load: Requests must be positive (every load loop is bounded)")
	case o.Duration <= 0:
		return errors.New("bench: load: Duration must be positive (every load loop is bounded)")
	case o.Concurrency < 0 || o.Timeout < 0:
		return errors.New("bench: load: negative Concurrency or Timeout")
	case o.Rate < 0:
		return errors.New("bench: load: negative Rate")
	case o.MABClients < 0 || o.MABClients > 1<<24:
		return errors.New("bench: load: MABClients outside 0..2^24")
	case len(o.Password) > 128:
		return errors.New("bench: load: Password longer than 128 octets (RFC 2865 §5.2)")
	}
	return nil
}

func (o *LoadOptions) setDefaults() {
	if o.User == "" {
		o.User = "alice"
	}
	if o.Password == "" {
		o.Password = "secret"
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
}

// Error kinds counted in LoadResult.Errors.
const (
	ErrKindReject        = "not-accept"        // a reply other than Access-Accept
	ErrKindAuthenticator = "bad-authenticator" // Response Authenticator does not verify (RFC 2865 §3)
	ErrKindMA            = "bad-ma"            // Message-Authenticator present and wrong (RFC 3579 §3.2)
	ErrKindMalformed     = "malformed"         // not a RADIUS packet
	ErrKindIO            = "io"                // a socket error other than a timeout
	ErrKindBuild         = "build"             // the request could not be encoded (User too long)
)

// LoadResult is what one run measured.
type LoadResult struct {
	Sent     int // requests sent
	Answered int // valid Access-Accepts received in time
	Timeouts int // requests without a valid reply within Timeout
	Errors   map[string]int
	Stale    int // replies to an earlier, timed-out request (ignored)
	// Elapsed runs from the first send to the last worker finishing.
	Elapsed time.Duration
	// Latency percentiles over answered requests, send to valid reply.
	P50, P99, Max time.Duration
}

// ErrorCount is the sum of Errors.
func (r LoadResult) ErrorCount() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Rate is answered requests per second.
func (r LoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Elapsed.Seconds()
}

// Load runs a closed loop of Access-Requests against o.Target until o.Requests have been sent or
// o.Duration has passed (or ctx ends), waits for the replies still due (at most o.Timeout), and
// validates every reply: code, ID, Response Authenticator and Message-Authenticator.
func Load(ctx context.Context, o LoadOptions) (LoadResult, error) {
	if err := o.Validate(); err != nil {
		return LoadResult{}, err
	}
	o.setDefaults()
	raddr, err := net.ResolveUDPAddr("udp", o.Target)
	if err != nil {
		return LoadResult{}, fmt.Errorf("bench: load: %w", err)
	}
	workers := make([]*worker, o.Concurrency)
	for i := range workers {
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			for _, w := range workers[:i] {
				w.conn.Close()
			}
			return LoadResult{}, fmt.Errorf("bench: load: %w", err)
		}
		// Enough buffer for a burst of late replies; the kernel doubles the value.
		_ = conn.SetReadBuffer(64 << 10)
		var seed [32]byte
		_, _ = crand.Read(seed[:])
		workers[i] = &worker{
			conn: conn, opts: &o, rng: rand.NewChaCha8(seed),
			errs: map[string]int{}, id: uint8(seed[0]), port: uint32(i) + 1,
			station: fmt.Sprintf("02-00-00-00-%02X-%02X", byte((i+1)>>8), byte(i+1)),
		}
	}
	var macs []string
	mac := o.MAC
	if mac == nil {
		mac = MABMAC
	}
	for i := range o.MABClients {
		macs = append(macs, mac(i))
	}
	for i, w := range workers {
		w.macs, w.next = macs, i*max(1, len(macs)/len(workers))
	}
	var tickets atomic.Int64
	tickets.Store(int64(o.Requests))
	start := time.Now()
	stopAt := start.Add(o.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.conn.Close()
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				t := tickets.Add(-1)
				if t < 0 {
					break
				}
				if o.Rate > 0 {
					// The ticket's place in the run: the first ticket taken leaves at once.
					due := start.Add(time.Duration(float64(int64(o.Requests)-1-t) / o.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						if d > time.Until(stopAt) {
							break
						}
						time.Sleep(d)
					}
				}
				w.exchange()
			}
		}()
	}
	wg.Wait()
	res := LoadResult{Elapsed: time.Since(start), Errors: map[string]int{}}
	var lat []time.Duration
	for _, w := range workers {
		res.Sent += w.sent
		res.Answered += len(w.lat)
		res.Timeouts += w.timeouts
		res.Stale += w.stale
		for k, v := range w.errs {
			res.Errors[k] += v
		}
		lat = append(lat, w.lat...)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = percentile(lat, 0.50)
		res.P99 = percentile(lat, 0.99)
		res.Max = lat[len(lat)-1]
	}
	return res, nil
}

// percentile returns the nearest-rank q-quantile of sorted samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted)) + 0.5)
	if i < 1 {
		i = 1
	}
	if i > len(sorted) {
		i = len(sorted)
	}
	return sorted[i-1]
}

// worker owns one socket and one request in flight.
type worker struct {
	conn *net.UDPConn
	opts *LoadOptions
	rng  *rand.ChaCha8
	id   uint8
	macs []string // MAB mode: the MACs to send, from next on
	next int

	req, buf []byte
	acct     acctCycle // the session the next Accounting-Request is about (acctload.go)
	sent     int
	timeouts int
	stale    int
	errs     map[string]int
	lat      []time.Duration
	port     uint32 // NAS-Port of its PAP requests
	station  string // Calling-Station-Id of its PAP requests
}

// request builds an Access-Request with Message-Authenticator first (BlastRADIUS hardening,
// CVE-2024-3596) and a hidden User-Password.
func (w *worker) request() (packet.Packet, [packet.AuthLen]byte, error) {
	if w.opts.Accounting {
		return w.accountingRequest()
	}
	var auth [packet.AuthLen]byte
	_, _ = w.rng.Read(auth[:])
	w.id++
	secret := []byte(w.opts.Secret)
	b := packet.New(w.req, packet.CodeAccessRequest, w.id, auth[:])
	b.AddMA()
	// A station stays behind its NAS port (RFC 2865 §5.5), as on a real switch: a MAB client's
	// port follows from its MAC; each worker's PAP logins come from a station and port of its own.
	// A port that changed with every request, or one station on every port, would make each
	// Access-Accept a client that moved, which the session table (cache/session) must rewrite.
	user, password, station, port := w.opts.User, w.opts.Password, w.station, w.port
	if len(w.macs) > 0 {
		i := w.next % len(w.macs)
		mac := w.macs[i]
		w.next++
		user, password, station, port = mac, mac, mac, uint32(i)+1
	}
	b.AddString(packet.AttrUserName, user)
	var pw [128]byte
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(pw[:0], []byte(password), secret, auth[:]))
	b.Add(4, []byte{127, 0, 0, 1}) // NAS-IP-Address
	b.AddUint32(5, port)           // NAS-Port
	b.AddUint32(61, 15)            // NAS-Port-Type = Ethernet
	if len(w.macs) > 0 {
		b.AddUint32(6, 10) // Service-Type = Call-Check
	}
	b.AddString(31, station) // Calling-Station-Id
	p, err := b.Finish(secret, nil)
	if err != nil {
		return nil, auth, fmt.Errorf("bench: load: build request: %w", err)
	}
	w.req = p[:0]
	return p, auth, nil
}

// exchange sends one request and waits for its valid reply or the timeout.
func (w *worker) exchange() {
	p, auth, err := w.request()
	if err != nil {
		w.errs[ErrKindBuild]++
		return
	}
	if w.buf == nil {
		w.buf = make([]byte, packet.MaxLen+1)
	}
	start := time.Now()
	deadline := start.Add(w.opts.Timeout)
	if err := w.conn.SetReadDeadline(deadline); err != nil {
		w.errs[ErrKindIO]++
		return
	}
	if _, err := w.conn.Write(p); err != nil {
		w.errs[ErrKindIO]++
		// A refused datagram (ICMP port unreachable) comes back at once; do not spin.
		time.Sleep(10 * time.Millisecond)
		return
	}
	w.sent++
	secret := []byte(w.opts.Secret)
	for {
		n, err := w.conn.Read(w.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.timeouts++
				return
			}
			w.errs[ErrKindIO]++
			time.Sleep(time.Until(deadline))
			return
		}
		resp, err := packet.Parse(w.buf[:n])
		if err != nil {
			w.errs[ErrKindMalformed]++
			return
		}
		if resp.ID() != p.ID() {
			w.stale++ // a late answer to a request that already timed out
			continue
		}
		switch {
		case !packet.CheckResponseAuthenticator(resp, auth[:], secret):
			w.errs[ErrKindAuthenticator]++
		case packet.CheckResponseMA(resp, auth[:], secret) == packet.MAInvalid:
			w.errs[ErrKindMA]++
		case resp.Code() != packet.CodeAccessAccept && !w.opts.Accounting,
			resp.Code() != packet.CodeAccountingResponse && w.opts.Accounting:
			w.errs[ErrKindReject]++
		default:
			w.lat = append(w.lat, time.Since(start))
		}
		return
	}
}
