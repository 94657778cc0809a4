package cli

import (
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mxedge/edge/control"
	"mxedge/edge/events"
)

func newEventsCmd() *cobra.Command { return newEventsCmdEnv(defaultOpsEnv()) }

func newEventsCmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var o outputFlag
	var follow bool
	var n int
	var filter eventFilter
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print NAC events: who was allowed or denied, how, by the cloud or locally, and why",
		Long: `events prints the most recent NAC decisions the running mxedge made or relayed, oldest first: time,
ACCEPT or REJECT, method (mab, eap-tls, pap, eap), MAC, identity, NAS, site, VLAN, source (the
upstream that answered, "local" while the cloud is unreachable, "external" for a server of a
route's pool such as an eduroam national server, "route" for a route's own reject), the route,
pool and realm of those, the reason of a local decision, the event type as the Mist Access Assurance guide names it ("NAC Client Access
Allowed", "NAC Client Certificate Expired", ...) and, for local EAP-TLS, the client certificate's
serial, CN, issuer and expiry. With --follow it keeps printing new events until interrupted.

--type, --nas, --mac, --user, --site, --method, --verdict and --since select events (all must
match); -n (--limit) then counts the matching events, searched among the last 10000 the daemon
keeps (its ring holds 1000 by default). -o json prints JSON Lines of mxedge.event.v1, -o yaml a
YAML stream (docs/output.md).`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			if n < 0 {
				return fmt.Errorf("%w: -n must not be negative", ErrUsage)
			}
			if err := filter.compile(env.now()); err != nil {
				return err
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
			if format != formatText {
				sw := &streamWriter{w: out, format: format}
				print = func(ev events.Event) error { return sw.write(eventToDoc(ev)) }
			}
			if !filter.anything {
				return notRunning(socket, ctxErr(ctx, c.Events(ctx, n, follow, print)))
			}
			// Filtered: keep the last n matches among the ring's events, print them at the
			// backlog's end, then every live match.
			recent := &lastN[events.Event]{n: n}
			err = c.EventsSplit(ctx, control.MaxRecentEvents, follow, func(ev events.Event, live bool) error {
				switch {
				case !filter.match(ev):
				case live:
					return print(ev)
				case n > 0:
					recent.add(ev)
				}
				return nil
			}, func() error {
				for _, ev := range recent.items() {
					if err := print(ev); err != nil {
						return err
					}
				}
				return nil
			})
			return notRunning(socket, ctxErr(ctx, err))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	fl.IntVarP(&n, "lines", "n", 20, "how many recent (matching) events to print first; also --limit")
	filter.register(fl)
	addOutputFlag(cmd, &o, true)
	fl.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "limit" {
			name = "lines"
		}
		return pflag.NormalizedName(name)
	})
	_ = cmd.RegisterFlagCompletionFunc("nas", completeNAS(&socket, env))
	_ = cmd.RegisterFlagCompletionFunc("mac", completeCacheMACs(&socket, env))
	_ = cmd.RegisterFlagCompletionFunc("method", fixedCompletions("mab", "eap-tls", "pap", "eap", "accounting"))
	_ = cmd.RegisterFlagCompletionFunc("verdict", fixedCompletions("accept", "reject"))
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
	for _, kv := range [][2]string{{"nas", ev.NAS}, {"site", ev.Site}, {"vlan", ev.VLAN}, {"via", src}, {"route", ev.Route}, {"pool", ev.Pool}, {"realm", ev.Realm}, {"reason", ev.Reason}, {"type", ev.Type},
		{"cert_serial", ev.CertSerial}, {"cert_cn", ev.CertCN}, {"cert_issuer", ev.CertIssuer}, {"cert_not_after", notAfter}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], cell(kv[1]))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}
