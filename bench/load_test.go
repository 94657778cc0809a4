package bench

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"mxedge/proxy/packet"
)

// answerMode is how the fake server answers the generator, the way a proxy under test might.
type answerMode int

const (
	answerAccept answerMode = iota
	answerReject
	answerBadAuthenticator
	answerBadMA
	answerSilent
	answerWrongID
)

// startFakeServer answers every datagram per mode and checks the request the generator built: a
// valid Message-Authenticator first and a User-Password that decrypts to the configured password.
func startFakeServer(tb testing.TB, secret, password string, mode answerMode) string {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, packet.MaxLen)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req, err := packet.Parse(buf[:n])
			if err != nil || req.Code() != packet.CodeAccessRequest || req[20] != packet.AttrMessageAuthenticator ||
				packet.CheckRequestMA(req, []byte(secret)) != packet.MAValid {
				tb.Errorf("generator sent a bad request: %v % x", err, buf[:n])
				continue
			}
			enc, _ := req.Attr(packet.AttrUserPassword)
			pw, err := packet.DecryptUserPassword(nil, enc, []byte(secret), req.Authenticator())
			// RFC 2865 §5.2: the password is padded with NULs to a multiple of 16 octets.
			if err != nil || string(bytes.TrimRight(pw, "\x00")) != password {
				tb.Errorf("User-Password decrypts to %q, %v", pw, err)
			}
			code := packet.CodeAccessAccept
			if mode == answerReject {
				code = packet.CodeAccessReject
			}
			b := packet.NewResponse(nil, req, code)
			resp, err := b.Finish([]byte(secret), req.Authenticator())
			if err != nil {
				tb.Error(err)
				return
			}
			switch mode {
			case answerSilent:
				continue
			case answerBadAuthenticator:
				resp[4] ^= 1
			case answerBadMA:
				resp = breakMA(resp, []byte(secret), req.Authenticator())
			case answerWrongID:
				resp[1]++
			}
			conn.WriteToUDPAddrPort(resp, src)
		}
	}()
	return conn.LocalAddr().String()
}

// breakMA flips a bit of Message-Authenticator and re-signs only the Response Authenticator, so
// that the reply fails the Message-Authenticator check alone.
func breakMA(resp packet.Packet, secret, reqAuth []byte) packet.Packet {
	resp[22] ^= 1
	// Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret), RFC 2865 §3.
	tmp := append(packet.Packet(nil), resp...)
	copy(tmp[4:20], reqAuth)
	sum := md5.Sum(append(tmp, secret...))
	copy(resp[4:20], sum[:])
	return resp
}

func TestLoadValidatesReplies(t *testing.T) {
	const secret = "s3cret"
	tests := []struct {
		name     string
		mode     answerMode
		answered bool
		errKind  string
		timeouts bool
	}{
		{"accept", answerAccept, true, "", false},
		{"reject", answerReject, false, ErrKindReject, false},
		{"bad response authenticator", answerBadAuthenticator, false, ErrKindAuthenticator, false},
		{"bad message authenticator", answerBadMA, false, ErrKindMA, false},
		{"silent", answerSilent, false, "", true},
		{"wrong id", answerWrongID, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFakeServer(t, secret, "pw", tt.mode)
			res, err := Load(t.Context(), LoadOptions{
				Target: addr, Secret: secret, Password: "pw", Concurrency: 4,
				Requests: 40, Duration: 5 * time.Second, Timeout: 100 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent == 0 || res.Sent > 40 {
				t.Fatalf("sent %d, want 1..40", res.Sent)
			}
			if got := res.Answered > 0; got != tt.answered {
				t.Errorf("answered %d, want answers: %v (%+v)", res.Answered, tt.answered, res)
			}
			if tt.answered && (res.Answered != res.Sent || res.P50 <= 0 || res.P99 < res.P50 || res.Rate() <= 0) {
				t.Errorf("accept: %+v", res)
			}
			if tt.errKind != "" && res.Errors[tt.errKind] != res.Sent {
				t.Errorf("errors %v, want %d %s", res.Errors, res.Sent, tt.errKind)
			}
			if tt.timeouts != (res.Timeouts > 0) {
				t.Errorf("timeouts %d, want some: %v", res.Timeouts, tt.timeouts)
			}
		})
	}
}

func TestLoadIsBounded(t *testing.T) {
	addr := startFakeServer(t, "x", "pw", answerAccept)
	tests := []struct {
		name     string
		requests int
		duration time.Duration
		maxWall  time.Duration
	}{
		{"by count", 100, time.Minute, 10 * time.Second},
		{"by time", 1 << 30, 200 * time.Millisecond, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res, err := Load(t.Context(), LoadOptions{Target: addr, Secret: "x", Password: "pw", Concurrency: 8,
				Requests: tt.requests, Duration: tt.duration})
			if err != nil {
				t.Fatal(err)
			}
			if wall := time.Since(start); wall > tt.maxWall {
				t.Errorf("took %v", wall)
			}
			if res.Sent > tt.requests || res.Answered == 0 {
				t.Errorf("%+v", res)
			}
		})
	}
	t.Run("by context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := Load(ctx, LoadOptions{Target: addr, Secret: "x", Password: "pw", Requests: 1 << 30, Duration: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 3*time.Second {
			t.Error("context did not stop the run")
		}
	})
}

func TestLoadOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    LoadOptions
		want string
	}{
		{"no target", LoadOptions{Secret: "s", Requests: 1, Duration: time.Second}, "Target"},
		{"no secret", LoadOptions{Target: "127.0.0.1:1", Requests: 1, Duration: time.Second}, "Secret"},
		{"unbounded count", LoadOptions{Target: "127.0.0.1:1", Secret: "s", Duration: time.Second}, "Requests"},
		{"unbounded time", LoadOptions{Target: "127.0.0.1:1", Secret: "s", Requests: 1}, "Duration"},
		{"long password", LoadOptions{Target: "127.0.0.1:1", Secret: "s", Requests: 1, Duration: time.Second, Password: strings.Repeat("x", 129)}, "Password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error about %s", err, tt.want)
			}
			if _, err := Load(t.Context(), tt.o); err == nil {
				t.Error("Load accepted invalid options")
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}}
	for _, tt := range tests {
		if got := percentile(s, tt.q); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		err  bool
	}{
		{"plain", "123 (mxedge) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 3 * time.Second, false},
		{"paren in name", "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, false},
		{"short", "7 (x) R 1 2", 0, true},
		{"no name", "garbage", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 2 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("got %v, %v; want %v, err %v", got, err, tt.want, tt.err)
			}
			if err != nil && !errors.Is(err, ErrProcStat) {
				t.Errorf("error %v is not ErrProcStat", err)
			}
		})
	}
}

func TestParseHostStat(t *testing.T) {
	h, err := parseHostStat("cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 1 2 3 4\n")
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal = 100+5+50+3+2+1 (guest is inside user)
	if h.Busy != 161*10*time.Millisecond || h.Total != 1181*10*time.Millisecond {
		t.Errorf("%+v", h)
	}
	if _, err := parseHostStat("intr 1 2 3"); !errors.Is(err, ErrProcStat) {
		t.Errorf("err = %v", err)
	}
}

func TestSelfCPUTimeAdvances(t *testing.T) {
	a, err := SelfCPUTime()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ {
		if b, _ := SelfCPUTime(); b > a {
			return
		}
	}
	t.Error("CPU time did not advance while spinning")
}

// TestLoadMAB: in MAB mode every request is MAB as a switch sends it (User-Name = User-Password =
// Calling-Station-Id, Service-Type Call-Check) and the MACs cycle through MABClients.
func TestLoadMAB(t *testing.T) {
	const secret, clients = "s3cret", 10
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	seen, ports := map[string]int{}, map[string]string{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, packet.MaxLen)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req, err := packet.Parse(buf[:n])
			if err != nil {
				t.Errorf("bad request: %v", err)
				continue
			}
			user, _ := req.Attr(packet.AttrUserName)
			station, _ := req.Attr(packet.AttrCallingStationID)
			st, _ := req.Attr(6)
			enc, _ := req.Attr(packet.AttrUserPassword)
			pw, _ := packet.DecryptUserPassword(nil, enc, []byte(secret), req.Authenticator())
			if string(user) != string(station) || string(bytes.TrimRight(pw, "\x00")) != string(user) || !bytes.Equal(st, []byte{0, 0, 0, 10}) {
				t.Errorf("not MAB: User-Name %q Calling-Station-Id %q password %q Service-Type % x", user, station, pw, st)
			}
			seen[string(user)]++
			if port, ok := req.Attr(5); !ok || len(port) != 4 {
				t.Errorf("%s: no NAS-Port", user)
			} else if p, ok := ports[string(user)]; ok && p != string(port) {
				t.Errorf("%s moved from NAS-Port % x to % x: a station stays behind its port", user, p, port)
			} else {
				ports[string(user)] = string(port)
			}
			b := packet.NewResponse(nil, req, packet.CodeAccessAccept)
			resp, _ := b.Finish([]byte(secret), req.Authenticator())
			conn.WriteToUDPAddrPort(resp, src)
		}
	}()
	res, err := Load(t.Context(), LoadOptions{Target: conn.LocalAddr().String(), Secret: secret, Concurrency: 2,
		Requests: 100, Duration: 10 * time.Second, MABClients: clients})
	conn.Close()
	<-done
	if err != nil || res.Answered != 100 {
		t.Fatalf("answered %d, %v", res.Answered, err)
	}
	if len(seen) != clients {
		t.Fatalf("%d distinct MACs, want %d: %v", len(seen), clients, seen)
	}
	for i := range clients {
		if seen[MABMAC(i)] == 0 {
			t.Fatalf("%s never sent", MABMAC(i))
		}
	}
}

func TestParseRSS(t *testing.T) {
	got, err := parseRSS("Name:\tmxedge\nVmPeak:\t  999 kB\nVmRSS:\t  183320 kB\nRssAnon:\t 1 kB\n")
	if err != nil || got != 183320<<10 {
		t.Fatalf("parseRSS = %d, %v", got, err)
	}
	if _, err := parseRSS("Name:\tx\n"); err == nil {
		t.Fatal("no VmRSS: no error")
	}
	if n, err := ProcRSS(os.Getpid()); err != nil || n == 0 {
		t.Fatalf("ProcRSS(self) = %d, %v", n, err)
	}
	if m, err := ProcMemory(os.Getpid()); err != nil || m.Anon == 0 || m.Anon+m.File > m.RSS {
		t.Fatalf("ProcMemory(self) = %+v, %v", m, err)
	}
	if _, err := statusKB("RssAnon:\t12 MB\n", "RssAnon:"); err == nil {
		t.Fatal("RssAnon not in kB: no error")
	}
}

func TestParseCtxSwitches(t *testing.T) {
	v, n, err := parseCtxSwitches("Name:\tmxedge\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n")
	if err != nil || v != 1234 || n != 56 {
		t.Fatalf("parseCtxSwitches = %d, %d, %v", v, n, err)
	}
	if _, _, err := parseCtxSwitches("Name:\tx\nvoluntary_ctxt_switches:\t1\n"); err == nil {
		t.Fatal("no nonvoluntary_ctxt_switches: no error")
	}
	if _, _, err := parseCtxSwitches("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"); err == nil {
		t.Fatal("not a number: no error")
	}
	if v, _, err := ProcCtxSwitches(os.Getpid()); err != nil || v == 0 {
		t.Fatalf("ProcCtxSwitches(self) = %d, %v", v, err)
	}
}

// TestLoadRate: a paced run sends about Rate requests per second, not as many as it can.
func TestLoadRate(t *testing.T) {
	const secret = "s3cret"
	addr := startFakeServer(t, secret, "secret", answerAccept)
	res, err := Load(t.Context(), LoadOptions{Target: addr, Secret: secret, Concurrency: 4, Requests: 1_000_000,
		Duration: time.Second, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 1 s: about 200, never thousands (the fake answers in microseconds).
	if res.Sent < 150 || res.Sent > 210 || res.Answered != res.Sent {
		t.Fatalf("sent %d, answered %d in %v at 200/s", res.Sent, res.Answered, res.Elapsed)
	}
}
