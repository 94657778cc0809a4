package survival

import (
	"fmt"
	"io"
	"time"

	"mxedge/bench"
)

// CPUFunc returns a process's CPU time so far.
type CPUFunc func() (time.Duration, error)

// Window measures the CPU of the server under test, of this process (the load generator) and of
// the whole host around one load run.
type Window struct {
	server         CPUFunc
	server0, self0 time.Duration
	host0          bench.HostCPU
	t0             time.Time
}

// StartWindow reads the counters at the start of a measurement.
func StartWindow(server CPUFunc) (*Window, error) {
	w := &Window{server: server, t0: time.Now()}
	var err1, err2, err3 error
	w.server0, err1 = server()
	w.self0, err2 = bench.SelfCPUTime()
	w.host0, err3 = bench.ReadHostCPU()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// CPU is what a window measured.
type CPU struct {
	Server, Gen time.Duration
	// OtherCores is the host's busy time not spent by the server or the generator, per second of
	// wall time: what the rest of the machine took. Above about 0.3 a row is noisy.
	OtherCores float64
	Wall       time.Duration
}

// Stop reads the counters at the end of the measurement.
func (w *Window) Stop() (CPU, error) {
	s1, err1 := w.server()
	g1, err2 := bench.SelfCPUTime()
	h1, err3 := bench.ReadHostCPU()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return CPU{}, err
		}
	}
	c := CPU{Server: s1 - w.server0, Gen: g1 - w.self0, Wall: time.Since(w.t0)}
	other := (h1.Busy - w.host0.Busy) - c.Server - c.Gen
	c.OtherCores = max(0, other.Seconds()/c.Wall.Seconds())
	return c, nil
}

// PerOp returns d per operation in µs, or 0 when there were none.
func PerOp(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// MABRow is one line of the MAB table.
type MABRow struct {
	Res MABResult
	CPU CPU
}

// P99Target is the latency target for local MAB: a local answer must stay well inside a NAS's
// retransmission timer.
const P99Target = 2 * time.Millisecond

// WriteMABTable prints the local MAB table.
func WriteMABTable(w io.Writer, rows []MABRow) {
	fmt.Fprintf(w, "%8s %8s %7s %8s %9s %8s %8s %8s %8s %8s %7s %6s %6s %10s %9s %6s  %s\n",
		"offered", "sent/s", "maxlag", "answered", "answers/s", "p50", "p99", "p99.9", "max", "p99 user",
		">2ms", "lost", "wrong", "mx µs/ans", "gen µs/rq", "other", "p99<2ms")
	for _, r := range rows {
		m := r.Res
		ok := m.P99 < P99Target && m.Answered > 0 && m.Lost == 0 && m.Wrong == 0
		verdict := "ok"
		if !ok {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "%8d %8.0f %7s %8d %9.0f %8s %8s %8s %8s %8s %7d %6d %6d %10.1f %9.1f %6.2f  %s\n",
			m.Offered, m.SendRate(), fmtDur(m.MaxLag), m.Answered, m.AnswerRate(), fmtDur(m.P50), fmtDur(m.P99),
			fmtDur(m.P999), fmtDur(m.Max), fmtDur(m.P99User), m.Late, m.Lost, m.Wrong,
			PerOp(r.CPU.Server, m.Answered), PerOp(r.CPU.Gen, m.Sent), r.CPU.OtherCores, verdict)
	}
}

// EAPRow is one line of the EAP-TLS table.
type EAPRow struct {
	Server string // "mxedge" or "freeradius"
	TLS    string // "1.2" or "1.3"
	C      int
	Res    EAPResult
	CPU    CPU
}

// ServerPerAuth is the server's CPU µs per successful authentication.
func (r EAPRow) ServerPerAuth() float64 { return PerOp(r.CPU.Server, r.Res.OK) }

// Local EAP-TLS targets, per authentication.
const (
	MxedgeCPUTarget = 1000.0 // µs of mxedge CPU per ECDSA authentication
	CPURatioTarget  = 2.5    // FreeRADIUS CPU per authentication ÷ mxedge's
)

// WriteEAPTable prints the EAP-TLS table and the FreeRADIUS/mxedge ratios per TLS version.
func WriteEAPTable(w io.Writer, rows []EAPRow) {
	fmt.Fprintf(w, "%-10s %4s %3s %7s %6s %8s %8s %8s %7s %12s %12s %6s\n",
		"server", "tls", "C", "auths", "failed", "auths/s", "p50", "p99", "rtt/auth", "srv µs/auth", "gen µs/auth", "other")
	for _, r := range rows {
		m := r.Res
		rt := 0.0
		if m.OK > 0 {
			rt = float64(m.Rounds) / float64(m.OK)
		}
		fmt.Fprintf(w, "%-10s %4s %3d %7d %6d %8.1f %8s %8s %7.1f %12.0f %12.0f %6.2f\n",
			r.Server, r.TLS, r.C, m.OK, m.Failed, m.Rate(), fmtDur(m.P50), fmtDur(m.P99), rt,
			r.ServerPerAuth(), PerOp(r.CPU.Gen, m.OK), r.CPU.OtherCores)
	}
	fmt.Fprintf(w, "\n%-4s %16s %18s %18s\n", "tls", "mxedge µs/auth", "freeradius/mxedge", "auths/s ratio")
	for _, tv := range []string{"1.2", "1.3"} {
		mx, fr := findRow(rows, "mxedge", tv), findRow(rows, "freeradius", tv)
		if mx == nil {
			continue
		}
		mxv := verdict(mx.Res.OK > 0 && mx.Res.Failed == 0 && mx.ServerPerAuth() <= MxedgeCPUTarget)
		ratio, rv, rr := "n/a", "MISS", "n/a"
		if fr != nil && fr.Res.OK > 0 && mx.Res.OK > 0 {
			q := fr.ServerPerAuth() / mx.ServerPerAuth()
			ratio = fmt.Sprintf("%.2f", q)
			rv = verdict(q >= CPURatioTarget && fr.Res.Failed == 0 && mx.Res.Failed == 0)
			rr = fmt.Sprintf("%.2f", mx.Res.Rate()/fr.Res.Rate())
		}
		fmt.Fprintf(w, "%-4s %8.0f (≤%4.0f) %-4s %8s (≥%.1f) %-4s %10s (mx/fr)\n",
			tv, mx.ServerPerAuth(), MxedgeCPUTarget, mxv, ratio, CPURatioTarget, rv, rr)
	}
	if d, fr := findRow(rows, "mx-nomlkem", "1.3"), findRow(rows, "freeradius", "1.3"); d != nil && d.Res.OK > 0 && fr != nil && fr.Res.OK > 0 {
		fmt.Fprintf(w, "diagnostic, mxedge with GODEBUG=tlsmlkem=0 (X25519 like FreeRADIUS): 1.3 %.0f µs/auth, freeradius/mxedge %.2f\n",
			d.ServerPerAuth(), fr.ServerPerAuth()/d.ServerPerAuth())
	}
}

func findRow(rows []EAPRow, server, tv string) *EAPRow {
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].Server == server && rows[i].TLS == tv {
			return &rows[i]
		}
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
