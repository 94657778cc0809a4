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
	var socket, output string
	var asJSON bool
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

-o json (or --json) prints {"schema":"mxedge.sessions.v1","sessions":[...]}.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case output == "" || output == "text":
			case output == "json":
				asJSON = true
			default:
				return fmt.Errorf("%w: --output %q: want text or json", ErrUsage, output)
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
			if asJSON {
				return writeJSONLine(out, list)
			}
			return writeSessions(out, list.Sessions, env.now())
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&asJSON, "json", false, "print JSON (same as -o json)")
	f.StringVar(&q.NAS, "nas", "", "only sessions of this NAS client (its name)")
	f.StringVar(&q.Site, "site", "", "only sessions at this site")
	f.StringVar(&q.MAC, "mac", "", "only sessions of this MAC (Calling-Station-Id), any notation")
	f.StringVar(&q.User, "user", "", "only sessions of this User-Name (case-insensitive)")
	f.StringVar(&q.IP, "ip", "", "only sessions with this Framed-IP (IPv4 or IPv6)")
	f.StringVar(&q.State, "state", "", "only sessions in this state: authorized, active or stopped")
	f.IntVar(&q.Limit, "limit", 0, "print at most this many sessions, oldest first (0: all)")
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
