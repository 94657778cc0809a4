package cli

import (
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"mxedge/edge/control"
	"mxedge/edge/events"
)

func newEventsCmd() *cobra.Command { return newEventsCmdEnv(defaultOpsEnv()) }

func newEventsCmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var asJSON, follow bool
	var n int
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print NAC events: who was allowed or denied, how, by the cloud or locally, and why",
		Long: `events prints the most recent NAC decisions the running mxedge made or relayed, oldest first: time,
ACCEPT or REJECT, method (mab, eap-tls, pap, eap), MAC, identity, NAS, site, VLAN, source (the
upstream that answered, or "local" while the cloud is unreachable), the reason of a local
decision, the event type as the Mist Access Assurance guide names it ("NAC Client Access
Allowed", "NAC Client Certificate Expired", ...) and, for local EAP-TLS, the client certificate's
serial, CN, issuer and expiry. With --follow it keeps printing new events until interrupted; with
--json it prints JSON Lines.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 {
				return fmt.Errorf("%w: -n must not be negative", ErrUsage)
			}
			ctx := cmd.Context()
			if follow {
				var stop func()
				ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
				defer stop()
			}
			out := cmd.OutOrStdout()
			c := dialDaemon(socket, env)
			print := func(ev events.Event) error { return writeEvent(out, ev) }
			if asJSON {
				print = func(ev events.Event) error { return writeJSONLine(out, ev) }
			}
			err := c.Events(ctx, n, follow, print)
			return notRunning(socket, ctxErr(ctx, err))
		},
	}
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON Lines")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many recent events to print first (the daemon keeps 1000)")
	return cmd
}

// writeEvent prints one event on one line, fixed columns first so a followed stream stays aligned.
func writeEvent(w io.Writer, ev events.Event) error {
	verdict := "REJECT"
	if ev.Allowed {
		verdict = "ACCEPT"
	}
	src := ev.Source
	if ev.Upstream != "" {
		src += ":" + ev.Upstream
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-6s  %-8s  %-17s  %s", formatTime(ev.Time), verdict, cell(ev.Method), cell(ev.MAC), cell(ev.Identity))
	var notAfter string
	if !ev.CertNotAfter.IsZero() {
		notAfter = formatTime(ev.CertNotAfter)
	}
	for _, kv := range [][2]string{{"nas", ev.NAS}, {"site", ev.Site}, {"vlan", ev.VLAN}, {"via", src}, {"reason", ev.Reason}, {"type", ev.Type},
		{"cert_serial", ev.CertSerial}, {"cert_cn", ev.CertCN}, {"cert_issuer", ev.CertIssuer}, {"cert_not_after", notAfter}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], cell(kv[1]))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}
