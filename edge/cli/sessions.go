package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/control"
)

func newSessionsCmd() *cobra.Command { return newSessionsCmdEnv(defaultOpsEnv()) }

func newSessionsCmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var o outputFlag
	var q control.SessionQuery
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the client sessions the edge has seen (Access-Accept joined with accounting)",
		Long: `sessions prints the session table of the running mxedge: every client session admitted
through it (by the cloud, or locally during an outage: DECIDED says cloud, cache, default or
policy) joined with its accounting (Acct-Session-Id, Framed-IP, octets). Filters combine:
--nas and --site match exactly, --mac takes any notation, --user ignores case, --ip matches
Framed-IP-Address, Framed-IPv6-Address or the Framed-IPv6-Prefix, --state is authorized
(Access-Accept, no accounting yet), active or stopped. RECONCILE "needed" marks a session
admitted locally that the cloud has not re-authorized yet (docs/sessions.md).

-o json (or --json) and -o yaml print {"schema":"mxedge.sessions.v1","sessions":[...]}
(docs/output.md).`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			if q.Limit < 0 {
				return fmt.Errorf("%w: --limit %d: must not be negative", ErrUsage, q.Limit)
			}
			if _, err := edge.SessionQuery(q); err != nil { // the daemon checks again; say which flag here
				return fmt.Errorf("%w: %v", ErrUsage, err)
			}
			list, err := dialDaemon(socket, env).Sessions(cmd.Context(), q)
			if err != nil {
				return notRunning(socket, err)
			}
			out := cmd.OutOrStdout()
			if format != formatText {
				return writeDoc(out, format, sessionsToDoc(list.Sessions))
			}
			return writeSessions(out, list.Sessions, env.now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	addOutputFlag(cmd, &o, true)
	f.StringVar(&q.NAS, "nas", "", "only sessions of this NAS client (its name)")
	f.StringVar(&q.Site, "site", "", "only sessions at this site")
	f.StringVar(&q.MAC, "mac", "", "only sessions of this MAC (Calling-Station-Id), any notation")
	f.StringVar(&q.User, "user", "", "only sessions of this User-Name (case-insensitive)")
	f.StringVar(&q.IP, "ip", "", "only sessions with this Framed-IP (IPv4 or IPv6)")
	f.StringVar(&q.State, "state", "", "only sessions in this state: authorized, active or stopped")
	f.IntVar(&q.Limit, "limit", 0, "print at most this many sessions, oldest first (0: all)")
	_ = cmd.RegisterFlagCompletionFunc("nas", completeNAS(&socket, env))
	_ = cmd.RegisterFlagCompletionFunc("site", completeSites(&socket, env))
	_ = cmd.RegisterFlagCompletionFunc("state", fixedCompletions("authorized", "active", "stopped"))
	return cmd
}

func writeSessions(w io.Writer, ss []control.Session, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tNAS\tSITE\tPORT\tMAC\tUSER\tIP\tVLAN\tMETHOD\tDECIDED\tRECONCILE\tACCT-SESSION-ID\tUPDATED")
	need := 0
	for _, s := range ss {
		port := s.NASPortID
		if port == "" && s.NASPort != nil {
			port = strconv.FormatUint(uint64(*s.NASPort), 10)
		}
		ip := s.FramedIP
		if ip == "" {
			ip = s.FramedIPv6
		}
		if ip == "" {
			ip = s.FramedIPv6Prefix
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, cell(s.NAS), cell(s.Site),
			cell(port), cell(s.MAC), cell(s.UserName), cell(ip), cell(s.VLAN), cell(s.Method), s.DecidedBy, s.Reconcile,
			cell(s.AcctSessionID), ago(now, s.UpdatedAt))
		if s.Reconcile == "needed" {
			need++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d sessions, %d admitted locally awaiting reconciliation\n", len(ss), need)
	return err
}

// sessionsDoc is the schema mxedge.sessions.v1 (docs/output.md): every key always present, an
// absent time or NAS-Port null.
type sessionsDoc struct {
	Schema   string       `json:"schema"`
	Sessions []sessionDoc `json:"sessions"`
}

type sessionDoc struct {
	ID                 uint64  `json:"id"`
	State              string  `json:"state"`
	NAS                string  `json:"nas"`
	NASAddress         string  `json:"nas_address"`
	Vendor             string  `json:"vendor"`
	Site               string  `json:"site"`
	NASPort            *uint32 `json:"nas_port"`
	NASPortID          string  `json:"nas_port_id"`
	CalledStationID    string  `json:"called_station_id"`
	SSID               string  `json:"ssid"`
	CallingStationID   string  `json:"calling_station_id"`
	MAC                string  `json:"mac"`
	UserName           string  `json:"user_name"`
	Method             string  `json:"method"`
	VLAN               string  `json:"vlan"`
	ClassHex           string  `json:"class_hex"`
	DecidedBy          string  `json:"decided_by"`
	Reconcile          string  `json:"reconcile"`
	ReconcileAttempts  uint32  `json:"reconcile_attempts"`
	AcctSessionID      string  `json:"acct_session_id"`
	AcctMultiSessionID string  `json:"acct_multi_session_id"`
	FramedIP           string  `json:"framed_ip"`
	FramedIPv6         string  `json:"framed_ipv6"`
	FramedIPv6Prefix   string  `json:"framed_ipv6_prefix"`
	InputOctets        uint64  `json:"input_octets"`
	OutputOctets       uint64  `json:"output_octets"`
	SessionTimeSeconds uint32  `json:"session_time_seconds"`
	InterimSeconds     uint32  `json:"interim_interval_seconds"`
	TerminateCause     uint32  `json:"terminate_cause"`
	AuthorizedAt       *string `json:"authorized_at"`
	StartedAt          *string `json:"started_at"`
	UpdatedAt          *string `json:"updated_at"`
	StoppedAt          *string `json:"stopped_at"`
	ReconciledAt       *string `json:"reconciled_at"`
	ExpiresAt          *string `json:"expires_at"`
	Origin             string  `json:"origin"`
	Edge               string  `json:"edge"`
	AdmittedBy         string  `json:"admitted_by"`
}

func sessionsToDoc(ss []control.Session) sessionsDoc {
	d := sessionsDoc{Schema: control.SessionsSchema, Sessions: make([]sessionDoc, 0, len(ss))}
	for _, s := range ss {
		d.Sessions = append(d.Sessions, sessionDoc{ID: s.ID, State: s.State, NAS: s.NAS, NASAddress: s.NASAddress,
			Vendor: s.Vendor, Site: s.Site, NASPort: s.NASPort, NASPortID: s.NASPortID, CalledStationID: s.CalledStationID,
			SSID: s.SSID, CallingStationID: s.CallingStationID, MAC: s.MAC, UserName: s.UserName, Method: s.Method,
			VLAN: s.VLAN, ClassHex: s.ClassHex, DecidedBy: s.DecidedBy, Reconcile: s.Reconcile,
			ReconcileAttempts: s.ReconcileAttempts, AcctSessionID: s.AcctSessionID, AcctMultiSessionID: s.AcctMultiSessionID,
			FramedIP: s.FramedIP, FramedIPv6: s.FramedIPv6, FramedIPv6Prefix: s.FramedIPv6Prefix,
			InputOctets: s.InputOctets, OutputOctets: s.OutputOctets, SessionTimeSeconds: s.SessionTimeSeconds,
			InterimSeconds: s.InterimSeconds, TerminateCause: s.TerminateCause, AuthorizedAt: atTime(s.AuthorizedAt),
			StartedAt: atTime(s.StartedAt), UpdatedAt: atTime(s.UpdatedAt), StoppedAt: atTime(s.StoppedAt),
			ReconciledAt: atTime(s.ReconciledAt), ExpiresAt: atTime(s.ExpiresAt), Origin: s.Origin, Edge: s.Edge,
			AdmittedBy: s.AdmittedBy})
	}
	return d
}
