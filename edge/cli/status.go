package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mxedge/edge/control"
)

// opsEnv is what tests inject into status, events and clients.
type opsEnv struct {
	now     func() time.Time
	timeout time.Duration // control socket no-progress timeout
	// configPath is the configuration shell completion reads NAS names from when no daemon
	// answers; "" means the one run would use (mgmt.ConfigPath).
	configPath string
}

func defaultOpsEnv() opsEnv { return opsEnv{now: time.Now, timeout: control.DefaultTimeout} }

// dialDaemon returns a client for the socket; errNotRunning turns "nobody there" into the sentence
// an operator needs.
func dialDaemon(socket string, env opsEnv) *control.Client {
	c := control.Dial(socket)
	c.Timeout = env.timeout
	return c
}

func notRunning(socket string, err error) error {
	if errors.Is(err, control.ErrNoDaemon) {
		return fmt.Errorf("mxedge is not running (control socket %s: %w)", socket, err)
	}
	return err
}

// statusView is the part of the daemon's /v1/status document (edge.Status) the command prints.
// Unknown fields are ignored and missing ones print as "-", so an older or newer daemon still works.
type statusView struct {
	Mode       string              `json:"mode"`
	Since      time.Time           `json:"since"`
	Started    time.Time           `json:"started"`
	Upstreams  []upstreamView      `json:"upstreams"`
	Cache      cacheView           `json:"cache"`
	Received   uint64              `json:"received"`
	Forwarded  uint64              `json:"forwarded"`
	Answered   uint64              `json:"upstream_answered"`
	Local      uint64              `json:"local_decisions"`
	Dropped    map[string]uint64   `json:"dropped"`
	SpoolDepth *int                `json:"spool_depth"`
	Quarantine int                 `json:"spool_quarantined"`
	Listeners  []string            `json:"listeners"`
	Certs      []certView          `json:"certificates"`
	Revocation []revocationView    `json:"revocation"`
	Sessions   *sessionsView       `json:"sessions"`
	Reconcile  *reconcileView      `json:"reconcile"`
	NAS        []control.NASClient `json:"-"`
	// RadSec connections and discovered realms (edge/cli/status_tls.go).
	RadSec []peerConnView `json:"radsec"`
	Realms []realmView    `json:"realms"`
	// Routes and their pools (edge/cli/status_routes.go).
	Routes       []routeView     `json:"routes"`
	RouteDefault uint64          `json:"route_default"`
	RouteLoops   uint64          `json:"route_loops"`
	RoutePools   []routePoolView `json:"route_pools"`
}

// reconcileView is reconciliation after an outage (dynauth.ReconcileProgress).
type reconcileView struct {
	Running  bool      `json:"running"`
	Finished time.Time `json:"finished"`
	Sent     uint64    `json:"sent"`
	ACK      uint64    `json:"ack"`
	NAK      uint64    `json:"nak"`
	Timeouts uint64    `json:"timeouts"`
	Skipped  uint64    `json:"skipped"`
	Pending  int       `json:"pending"`
	Rate     float64   `json:"rate"`
}

// sessionsView is the session table's counts (edge.SessionStatus); absent when the table is off.
type sessionsView struct {
	Live          int    `json:"live"`
	Entries       int    `json:"entries"`
	NeedReconcile int    `json:"need_reconcile"`
	Starts        uint64 `json:"starts"`
	Stops         uint64 `json:"stops"`
	Dropped       uint64 `json:"dropped"`
}

// revocationView is one CRL or OCSP source (pki.SourceStatus).
type revocationView struct {
	Kind        string    `json:"kind"`
	URL         string    `json:"url"`
	State       string    `json:"state"`
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error"`
	Failures    uint64    `json:"failures"`
	Consecutive int       `json:"consecutive_failures"`
}

type upstreamView struct {
	Name        string        `json:"Name"`
	State       upstreamState `json:"State"`
	Since       time.Time     `json:"Since"`
	Addr        string        `json:"Addr"`
	RTT         time.Duration `json:"RTT"`
	Connections int           `json:"Connections"`
	Inflight    int           `json:"Inflight"`
	Answered    uint64        `json:"Answered"`
	Failures    uint64        `json:"Failures"`
	LastError   string        `json:"LastError"`
	TLS         []tlsView     `json:"TLS"`
}

type cacheView struct {
	Entries int `json:"Entries"`
}

type certView struct {
	Name     string    `json:"name"`
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

func (c certView) label() string {
	switch {
	case c.Name != "":
		return c.Name
	case c.Subject != "" && c.File != "":
		return fmt.Sprintf("%q in %s", c.Subject, c.File)
	}
	return orDash(c.Subject + c.File)
}

// upstreamState accepts proxy.UpstreamState as its number or its name.
type upstreamState string

func (s *upstreamState) UnmarshalJSON(b []byte) error {
	if n, err := strconv.Atoi(string(b)); err == nil {
		*s = upstreamState([]string{"connecting", "up", "down"}[min(max(n, 0), 2)])
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	*s = upstreamState(str)
	return nil
}

// modeMeaning says in words what a survivability mode does to requests.
var modeMeaning = map[string]string{
	"up":         "forwarding to the cloud NAC",
	"suspect":    "forwarding; upstream requests are timing out",
	"down":       "cloud unreachable: answering locally from the cache",
	"recovering": "upstream back, confirming before failback: still answering locally",
}

func newStatusCmd() *cobra.Command { return newStatusCmdEnv(defaultOpsEnv()) }

func newStatusCmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var o outputFlag
	var check bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether mxedge is working: mode, upstreams, NAS clients, cache, spool, counters",
		Long: `status asks the running mxedge (through its control socket) for its state: the survivability
mode and since when, each RadSec upstream's state, round-trip time and last error, the NAS clients
seen, the cache size, the accounting spool depth, certificate expiry and the key counters.
-o json and -o yaml print the document mxedge.status.v1 (docs/output.md).

--check is for monitoring systems: it prints one line ("MXEDGE OK - mode up, 2 of 2 upstreams up")
and exits with the plugin convention:
  0  ok        forwarding to the cloud NAC, every upstream up, no certificate near expiry
  1  degraded  still answering, but: the cloud is unreachable and mxedge answers locally (mode down
               or recovering), upstream requests time out (suspect), an upstream is down, a
               certificate expires within 14 days, a revocation source cannot be reached, or
               accounting records are quarantined
  2  critical  mxedge is not running or its control socket does not answer, or a certificate expired
  3  unknown   the daemon's answer could not be read
With -o json or -o yaml, --check prints the document instead of the line and exits the same way.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			c := dialDaemon(socket, env)
			raw, err := c.Status(cmd.Context())
			if err != nil {
				err = notRunning(socket, err)
				if check {
					fmt.Fprintf(out, "MXEDGE CRITICAL - %v\n", err)
					return &ExitError{Code: exitCritical, Err: err}
				}
				return err
			}
			var st statusView
			if err := json.Unmarshal(raw, &st); err != nil {
				err = fmt.Errorf("status: decode the daemon's answer: %w", err)
				if check {
					fmt.Fprintf(out, "MXEDGE UNKNOWN - %v\n", err)
					return &ExitError{Code: exitUnknown, Err: err}
				}
				return err
			}
			// The NAS table is a separate endpoint; an older daemon without it still gets a status.
			if nas, err := c.Clients(cmd.Context()); err == nil {
				st.NAS = nas
			}
			now := env.now()
			doc := buildStatusDoc(st, now)
			switch {
			case format != formatText:
				err = writeDoc(out, format, doc)
			case check:
				_, err = fmt.Fprintln(out, checkLine(doc))
			default:
				err = writeStatus(out, st, now)
			}
			if err != nil || !check {
				return err
			}
			return checkExit(doc.Health)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	cmd.Flags().BoolVar(&check, "check", false, "print one line and exit 0 ok, 1 degraded, 2 critical, 3 unknown (for monitoring)")
	addOutputFlag(cmd, &o, true)
	return cmd
}

// recentNAS is how long ago a NAS must have sent something to count as "recently seen".
const recentNAS = 15 * time.Minute

func writeStatus(w io.Writer, st statusView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	if !st.Started.IsZero() {
		p("running\tsince %s (%s)\n", formatTime(st.Started), ago(now, st.Started))
	}
	mode := st.Mode
	if mode == "" {
		mode = "-"
	}
	p("mode\t%s since %s (%s): %s\n", mode, formatTime(st.Since), ago(now, st.Since), orDash(modeMeaning[st.Mode]))
	if len(st.Listeners) > 0 {
		p("listeners\t%s\n", strings.Join(st.Listeners, ", "))
	}
	up := 0
	for _, u := range st.Upstreams {
		if u.State == "up" {
			up++
		}
	}
	p("upstreams\t%d of %d up\n", up, len(st.Upstreams))
	for _, u := range st.Upstreams {
		rtt := "-"
		if u.RTT > 0 {
			rtt = u.RTT.Round(100 * time.Microsecond).String()
		}
		p("  %s\t%s since %s, %s, rtt %s, answered %d, failures %d", cell(u.Name), u.State, formatTime(u.Since),
			orDash(u.Addr), rtt, u.Answered, u.Failures)
		if u.LastError != "" {
			p(", last error: %s", u.LastError)
		}
		p("\n")
		writeConnTLS(p, u.TLS)
	}
	writeRadSec(p, st)
	writeRoutes(p, st)
	recent, badAuth := 0, uint64(0)
	for _, n := range st.NAS {
		if !n.LastSeen.IsZero() && now.Sub(n.LastSeen) < recentNAS {
			recent++
		}
		badAuth += n.BadAuthenticator
	}
	if st.NAS != nil {
		p("nas clients\t%d configured, %d seen in the last %s", len(st.NAS), recent, recentNAS)
		if badAuth > 0 {
			p(", %d requests with a bad authenticator (wrong secret? see mxedge clients)", badAuth)
		}
		p("\n")
	}
	p("cache\t%d entries\n", st.Cache.Entries)
	if ss := st.Sessions; ss != nil {
		p("sessions\t%d live, %d kept after their stop, %d admitted locally awaiting reconciliation; %d starts, %d stops",
			ss.Live, ss.Entries-ss.Live, ss.NeedReconcile, ss.Starts, ss.Stops)
		if ss.Dropped > 0 {
			p(", %d updates dropped (writer behind)", ss.Dropped)
		}
		p("\n")
	}
	if rc := st.Reconcile; rc != nil {
		state := "idle"
		switch {
		case rc.Running:
			state = fmt.Sprintf("running at %g/s", rc.Rate)
		case !rc.Finished.IsZero():
			state = "last round finished " + ago(now, rc.Finished)
		}
		p("reconcile\t%s: %d pending, %d sent (%d ack, %d nak, %d no answer), %d skipped\n",
			state, rc.Pending, rc.Sent, rc.ACK, rc.NAK, rc.Timeouts, rc.Skipped)
	}
	if st.SpoolDepth != nil {
		p("spool\t%d accounting records waiting for replay\n", *st.SpoolDepth)
	}
	for _, c := range st.Certs {
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		warn := ""
		switch {
		case days < 0:
			warn = ": EXPIRED"
		case days < minCertDays:
			warn = ": renew now"
		}
		p("certificate\t%s expires %s (%d days)%s\n", c.label(), formatTime(c.NotAfter), days, warn)
	}
	for _, r := range st.Revocation {
		line := fmt.Sprintf("%s %s: %s", r.Kind, r.URL, r.State)
		if r.Consecutive > 0 {
			// Said every time status is asked, as RadSec clients warn at every connection.
			line += fmt.Sprintf(" — WARNING: cannot be reached (%s), %d failures", r.LastError, r.Failures)
		}
		p("revocation\t%s\n", line)
	}
	p("requests\treceived %d, forwarded %d, upstream answered %d, answered locally %d\n",
		st.Received, st.Forwarded, st.Answered, st.Local)
	var drops []string
	for _, r := range slices.Sorted(mapKeys(st.Dropped)) {
		drops = append(drops, fmt.Sprintf("%s %d", r, st.Dropped[r]))
	}
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	p("dropped\t%s\n", strings.Join(drops, ", "))
	return tw.Flush()
}

func mapKeys(m map[string]uint64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ago is a compact age: "3d4h", "5h12m", "42m10s", "30s".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < 0:
		return "in the future"
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh ago", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm ago", d/time.Hour, d%time.Hour/time.Minute)
	}
	return d.String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ctxErr hides the cancellation of a followed stream ended by Ctrl-C.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
