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
	var socket, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Per sink: events queued, sent (by type), failed attempts, last error and last success",
		Long: `status prints each identity sink of the running mxedge (docs/identity.md): its state (up, down,
or unknown before its first attempt), the events waiting in its queue, those sent by type
(connect, update, disconnect), failed delivery attempts, how often it went down, updates
coalesced and events dropped to keep the queue bounded, its last error and last success.

-o json prints {"schema":"mxedge.identity.v1","sinks":[...]}.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output %q: want text or json", ErrUsage, output)
			}
			raw, err := dialDaemon(socket, env).Identity(cmd.Context())
			if err != nil {
				return notRunning(socket, err)
			}
			var st edge.IdentityStatus
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("identity status: %w", err)
			}
			if output == "json" {
				return writeJSONLine(cmd.OutOrStdout(), st)
			}
			return writeIdentity(cmd.OutOrStdout(), st, env.now())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
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
