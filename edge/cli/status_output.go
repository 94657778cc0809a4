package cli

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// statusDoc is the schema mxedge.status.v1 (docs/output.md): the daemon's status document
// (edge.Status, read by statusView) mapped to stable names, so a daemon-side rename never reaches
// a monitoring script.
type statusDoc struct {
	Schema        string            `json:"schema"`
	Health        string            `json:"health"` // ok, degraded, critical: what status --check exits with
	Problems      []string          `json:"problems"`
	Mode          string            `json:"mode"` // up, suspect, down, recovering
	ModeMeaning   string            `json:"mode_meaning"`
	ModeChangedAt *string           `json:"mode_changed_at"`
	StartedAt     *string           `json:"started_at"`
	UptimeSeconds *int64            `json:"uptime_seconds"`
	Listeners     []string          `json:"listeners"`
	Upstreams     []upstreamDoc     `json:"upstreams"`
	NASClients    *nasSummaryDoc    `json:"nas_clients"`
	Cache         cacheSummaryDoc   `json:"cache"`
	Spool         *spoolDoc         `json:"spool"`
	Sessions      *sessionsSumDoc   `json:"sessions"`
	Certificates  []certDoc         `json:"certificates"`
	Revocation    []revocationDoc   `json:"revocation"`
	Requests      requestsDoc       `json:"requests"`
	Dropped       map[string]uint64 `json:"dropped"`
	Generated     string            `json:"generated_at"`
	RadSec        []radsecConnDoc   `json:"radsec_connections"` // edge/cli/status_tls.go
	Realms        []realmDoc        `json:"realms"`
}

type upstreamDoc struct {
	Name           string   `json:"name"`
	State          string   `json:"state"` // connecting, up, down
	StateChangedAt *string  `json:"state_changed_at"`
	Address        string   `json:"address"`
	RTTSeconds     *float64 `json:"rtt_seconds"`
	Connections    int      `json:"connections"`
	InFlight       int      `json:"in_flight"`
	Answered       uint64   `json:"answered"`
	Failures       uint64   `json:"failures"`
	LastError      string   `json:"last_error"`
	TLS            []tlsDoc `json:"tls"` // one per connection
}

type nasSummaryDoc struct {
	Configured           int    `json:"configured"`
	SeenRecently         int    `json:"seen_recently"`
	RecentWindowSeconds  int64  `json:"recent_window_seconds"`
	BadAuthenticatorReqs uint64 `json:"bad_authenticator_requests"`
}

type cacheSummaryDoc struct {
	Entries int `json:"entries"`
}

type spoolDoc struct {
	Depth       int `json:"depth"`
	Quarantined int `json:"quarantined"`
}

// sessionsSumDoc is the session table's counts (docs/sessions.md); null when the table is off.
type sessionsSumDoc struct {
	Live          int    `json:"live"`
	Stored        int    `json:"stored"`
	NeedReconcile int    `json:"need_reconcile"`
	Started       uint64 `json:"started"`
	Stopped       uint64 `json:"stopped"`
	Lost          uint64 `json:"updates_lost"`
}

type certDoc struct {
	Name             string  `json:"name"`
	File             string  `json:"file"`
	Subject          string  `json:"subject"`
	ExpiresAt        *string `json:"expires_at"`
	ExpiresInSeconds int64   `json:"expires_in_seconds"`
	State            string  `json:"state"` // ok, expiring, expired
}

type revocationDoc struct {
	Kind                string  `json:"kind"` // crl, ocsp
	URL                 string  `json:"url"`
	State               string  `json:"state"`
	LastSuccessAt       *string `json:"last_success_at"`
	LastError           string  `json:"last_error"`
	Failures            uint64  `json:"failures"`
	ConsecutiveFailures int     `json:"consecutive_failures"`
}

type requestsDoc struct {
	Received         uint64 `json:"received"`
	Forwarded        uint64 `json:"forwarded"`
	UpstreamAnswered uint64 `json:"upstream_answered"`
	AnsweredLocally  uint64 `json:"answered_locally"`
}

// Health levels of status --check, with their exit codes (docs/operations.md): the plugin
// convention monitoring systems (Nagios, Icinga, Zabbix agents, Sensu) read.
const (
	healthOK       = "ok"       // exit 0
	healthDegraded = "degraded" // exit 1
	healthCritical = "critical" // exit 2
	healthUnknown  = "unknown"  // exit 3

	exitDegraded = 1
	exitCritical = 2
	exitUnknown  = 3
)

// buildStatusDoc maps the daemon's document and judges its health.
func buildStatusDoc(st statusView, now time.Time) statusDoc {
	d := statusDoc{
		Schema: "mxedge.status.v1", Mode: cmpOr(st.Mode, "unknown"), ModeMeaning: modeMeaning[st.Mode],
		ModeChangedAt: atTime(st.Since), StartedAt: atTime(st.Started),
		Listeners: nonNil(st.Listeners), Upstreams: []upstreamDoc{}, Certificates: []certDoc{}, Revocation: []revocationDoc{},
		Cache: cacheSummaryDoc{Entries: st.Cache.Entries},
		Requests: requestsDoc{Received: st.Received, Forwarded: st.Forwarded, UpstreamAnswered: st.Answered,
			AnsweredLocally: st.Local},
		Dropped:   st.Dropped,
		Generated: now.UTC().Format(time.RFC3339),
	}
	if d.Dropped == nil {
		d.Dropped = map[string]uint64{}
	}
	if !st.Started.IsZero() {
		up := int64(now.Sub(st.Started) / time.Second)
		d.UptimeSeconds = &up
	}
	var crit, degr []string
	switch st.Mode {
	case "up":
	case "suspect":
		degr = append(degr, "upstream requests are timing out")
	case "down":
		degr = append(degr, "cloud NAC unreachable: answering locally from the cache")
	case "recovering":
		degr = append(degr, "cloud NAC back, confirming before failback: still answering locally")
	default:
		degr = append(degr, fmt.Sprintf("unknown mode %q", st.Mode))
	}
	up := 0
	for _, u := range st.Upstreams {
		ud := upstreamDoc{Name: u.Name, State: string(u.State), StateChangedAt: atTime(u.Since), Address: u.Addr,
			Connections: u.Connections, InFlight: u.Inflight, Answered: u.Answered, Failures: u.Failures, LastError: u.LastError,
			TLS: tlsDocs(u.TLS)}
		if u.RTT > 0 {
			s := seconds(u.RTT)
			ud.RTTSeconds = &s
		}
		if u.State == "up" {
			up++
		} else if st.Mode == "up" {
			// One upstream of several down while the mode is up: the edge still forwards.
			degr = append(degr, fmt.Sprintf("upstream %s is %s", u.Name, u.State))
		}
		d.Upstreams = append(d.Upstreams, ud)
	}
	d.RadSec, d.Realms = radsecDocs(st)
	if st.NAS != nil {
		n := &nasSummaryDoc{Configured: len(st.NAS), RecentWindowSeconds: int64(recentNAS / time.Second)}
		for _, c := range st.NAS {
			if !c.LastSeen.IsZero() && now.Sub(c.LastSeen) < recentNAS {
				n.SeenRecently++
			}
			n.BadAuthenticatorReqs += c.BadAuthenticator
		}
		d.NASClients = n
	}
	if ss := st.Sessions; ss != nil {
		d.Sessions = &sessionsSumDoc{Live: ss.Live, Stored: ss.Entries, NeedReconcile: ss.NeedReconcile, Started: ss.Starts,
			Stopped: ss.Stops, Lost: ss.Dropped}
	}
	if st.SpoolDepth != nil {
		d.Spool = &spoolDoc{Depth: *st.SpoolDepth, Quarantined: st.Quarantine}
		if st.Quarantine > 0 {
			degr = append(degr, fmt.Sprintf("%d accounting records quarantined in the spool", st.Quarantine))
		}
	}
	for _, c := range st.Certs {
		left := c.NotAfter.Sub(now)
		cd := certDoc{Name: c.Name, File: c.File, Subject: c.Subject, ExpiresAt: atTime(c.NotAfter),
			ExpiresInSeconds: int64(left / time.Second), State: "ok"}
		switch {
		case left < 0:
			cd.State = "expired"
			crit = append(crit, fmt.Sprintf("certificate %s expired", c.label()))
		case left < minCertDays*24*time.Hour:
			cd.State = "expiring"
			degr = append(degr, fmt.Sprintf("certificate %s expires in %d days", c.label(), int(left.Hours()/24)))
		}
		d.Certificates = append(d.Certificates, cd)
	}
	for _, r := range st.Revocation {
		d.Revocation = append(d.Revocation, revocationDoc{Kind: r.Kind, URL: r.URL, State: r.State,
			LastSuccessAt: atTime(r.LastSuccess), LastError: r.LastError, Failures: r.Failures, ConsecutiveFailures: r.Consecutive})
		if r.Consecutive > 0 {
			degr = append(degr, fmt.Sprintf("revocation source %s cannot be reached", r.URL))
		}
	}
	d.Health, d.Problems = healthOK, []string{}
	switch {
	case len(crit) > 0:
		d.Health = healthCritical
	case len(degr) > 0:
		d.Health = healthDegraded
	}
	d.Problems = append(append(d.Problems, crit...), degr...)
	return d
}

// checkLine is the one line status --check prints: the plugin convention "MXEDGE OK - …".
func checkLine(d statusDoc) string {
	up := 0
	for _, u := range d.Upstreams {
		if u.State == "up" {
			up++
		}
	}
	summary := fmt.Sprintf("mode %s, %d of %d upstreams up", d.Mode, up, len(d.Upstreams))
	if len(d.Problems) > 0 {
		summary += ": " + strings.Join(d.Problems, "; ")
	}
	return fmt.Sprintf("MXEDGE %s - %s", strings.ToUpper(d.Health), summary)
}

// checkExit is the error status --check returns for a health level (nil for ok).
func checkExit(health string) error {
	code := map[string]int{healthDegraded: exitDegraded, healthCritical: exitCritical, healthUnknown: exitUnknown}[health]
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code, Err: fmt.Errorf("status --check: %s", health)}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clip(s)
}
