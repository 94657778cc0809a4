package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/edge/identity"
)

func newIdentityCmd() *cobra.Command { return newIdentityCmdEnv(defaultOpsEnv()) }

func newIdentityCmdEnv(env opsEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Identity push: connection-state events to identity services and firewalls",
		Args:  cacheArgs(cobra.NoArgs),
	}
	cmd.AddCommand(newIdentityStatusCmd(env))
	return cmd
}

func newIdentityStatusCmd(env opsEnv) *cobra.Command {
	var socket string
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Per sink: events queued, sent (by type), failed attempts, last error and last success",
		Long: `status prints each identity sink of the running mxedge (docs/identity.md): its state (up, down,
or unknown before its first attempt), the events waiting in its queue, those sent by type
(connect, update, disconnect), failed delivery attempts, how often it went down, updates
coalesced and events dropped to keep the queue bounded, its last error and last success.

-o json|yaml prints the document mxedge.identity.v1 (docs/output.md).`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := out.get()
			if err != nil {
				return err
			}
			raw, err := dialDaemon(socket, env).Identity(cmd.Context())
			if err != nil {
				return notRunning(socket, err)
			}
			var st edge.IdentityStatus
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("identity status: %w", err)
			}
			if format != formatText {
				return writeDoc(cmd.OutOrStdout(), format, identityDocOf(st, env.now()))
			}
			return writeIdentity(cmd.OutOrStdout(), st, env.now())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	addOutputFlag(cmd, &out, false)
	return cmd
}

// identityDoc is mxedge.identity.v1 (docs/output.md): mapped here from the daemon's document, so
// a rename inside the daemon never reaches a script.
type identityDoc struct {
	Schema          string            `json:"schema"`
	Sinks           []identitySinkDoc `json:"sinks"`
	SessionsTracked int64             `json:"sessions_tracked"`
	TrackerDropped  map[string]uint64 `json:"tracker_dropped"`
	GeneratedAt     time.Time         `json:"generated_at"`
}

type identitySinkDoc struct {
	Name            string            `json:"name"`
	Type            string            `json:"type"`
	State           string            `json:"state"`
	Queued          int               `json:"queued"`
	Enqueued        uint64            `json:"enqueued"`
	Sent            uint64            `json:"sent"`
	SentByType      map[string]uint64 `json:"sent_by_type"`
	FailedAttempts  uint64            `json:"failed_attempts"`
	DownTransitions uint64            `json:"down_transitions"`
	Coalesced       uint64            `json:"coalesced"`
	Dropped         uint64            `json:"dropped"`
	LastError       string            `json:"last_error"`
	LastErrorAt     *time.Time        `json:"last_error_at"`
	LastSuccessAt   *time.Time        `json:"last_success_at"`
}

func identityDocOf(st edge.IdentityStatus, now time.Time) identityDoc {
	d := identityDoc{Schema: identity.StatusSchema, Sinks: []identitySinkDoc{}, SessionsTracked: st.Sessions,
		TrackerDropped: st.Dropped, GeneratedAt: now.UTC()}
	if d.TrackerDropped == nil {
		d.TrackerDropped = map[string]uint64{}
	}
	for _, s := range st.Sinks {
		sd := identitySinkDoc{Name: s.Name, Type: s.Type, State: s.State, Queued: s.Queued, Enqueued: s.Enqueued, Sent: s.Sent,
			SentByType: map[string]uint64{}, FailedAttempts: s.Failed, DownTransitions: s.Downs, Coalesced: s.Coalesced,
			Dropped: s.Dropped, LastError: s.LastError, LastErrorAt: s.LastErrAt, LastSuccessAt: s.LastOK}
		for _, k := range identity.Kinds { // every type present, zeros included
			sd.SentByType[k.String()] = s.SentByType[k.String()]
		}
		d.Sinks = append(d.Sinks, sd)
	}
	return d
}

func writeIdentity(w io.Writer, st edge.IdentityStatus, now time.Time) error {
	if len(st.Sinks) == 0 {
		_, err := fmt.Fprintln(w, "no identity sinks configured (identity.sinks in the configuration)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTYPE\tSTATE\tQUEUED\tSENT\tCONNECT\tUPDATE\tDISCONNECT\tFAILED\tCOALESCED\tDROPPED\tLAST SUCCESS")
	for _, s := range st.Sinks {
		last := "never"
		if s.LastOK != nil {
			last = ago(now, *s.LastOK)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", cell(s.Name), cell(s.Type), cell(s.State), s.Queued, s.Sent,
			s.SentByType[identity.KindConnect.String()], s.SentByType[identity.KindUpdate.String()], s.SentByType[identity.KindDisconnect.String()],
			s.Failed, s.Coalesced, s.Dropped, last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st.Sinks {
		if s.LastError != "" && s.LastErrAt != nil {
			fmt.Fprintf(w, "%s: last error %s: %s\n", s.Name, ago(now, *s.LastErrAt), s.LastError)
		}
	}
	_, err := fmt.Fprintf(w, "sessions tracked: %d\n", st.Sessions)
	return err
}
