package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"mxedge/edge/control"
)

func newCoACmd() *cobra.Command { return newCoACmdEnv(defaultOpsEnv()) }

// errCoARefused is returned when the NAS answered with a NAK or not at all, so scripts see a
// non-zero exit.
var errCoARefused = errors.New("the NAS did not apply it")

func newCoACmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var req control.CoARequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "coa",
		Short: "Disconnect, re-authenticate or bounce a client's session on its NAS (RFC 5176)",
		Long: `coa asks the running mxedge to send a Disconnect-Request or a CoA-Request for one session to
the NAS that holds it, found in the session table by --mac, --session (Acct-Session-Id), --user or
--ip, or sent to --nas. reauth and bounce are rendered for the NAS's vendor (docs/coa.md); a vendor
that defines no such CoA is refused before anything is sent. The NAS's answer is printed: ACK, or
NAK with its Error-Cause, or no answer after the retransmissions (Error-Cause 506).`,
	}
	for _, sub := range []struct{ use, action, short string }{
		{"disconnect", "disconnect", "End the session (Disconnect-Request)"},
		{"reauth", "reauthenticate", "Make the NAS re-authenticate the session (vendor CoA)"},
		{"bounce", "bounce-port", "Bounce the session's port so the client asks DHCP again (vendor CoA)"},
	} {
		c := &cobra.Command{
			Use:   sub.use,
			Short: sub.short,
			Args:  cacheArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				r := req
				r.Action = sub.action
				if r.MAC == "" && r.SessionID == "" && r.User == "" && r.IP == "" {
					return fmt.Errorf("%w: name the session with --mac, --session, --user or --ip", ErrUsage)
				}
				res, err := dialDaemon(socket, env).CoA(cmd.Context(), r)
				if err != nil {
					return notRunning(socket, err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					if err := writeJSONLine(out, res); err != nil {
						return err
					}
				} else {
					line := fmt.Sprintf("%s to %s: %s", res.Code, res.NAS, res.Result)
					if res.ErrorCause != 0 {
						line += fmt.Sprintf(" (Error-Cause %d %s)", res.ErrorCause, errorCauseName(res.ErrorCause))
					}
					fmt.Fprintf(out, "%s in %v\n", line, res.Dur.Round(time.Millisecond))
				}
				if res.Result != "ack" {
					return errCoARefused
				}
				return nil
			},
		}
		cmd.AddCommand(c)
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	pf.StringVar(&req.MAC, "mac", "", "the client's MAC (Calling-Station-Id)")
	pf.StringVar(&req.SessionID, "session", "", "the session's Acct-Session-Id")
	pf.StringVar(&req.User, "user", "", "the session's User-Name")
	pf.StringVar(&req.IP, "ip", "", "the client's Framed-IP-Address")
	pf.StringVar(&req.NAS, "nas", "", "the NAS client's name (needed when the session table does not know the session)")
	pf.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// errorCauseName names the Error-Cause values of RFC 5176 §3.6.
func errorCauseName(c uint32) string {
	switch c {
	case 201:
		return "Residual Session Context Removed"
	case 202:
		return "Invalid EAP Packet"
	case 401:
		return "Unsupported Attribute"
	case 402:
		return "Missing Attribute"
	case 403:
		return "NAS Identification Mismatch"
	case 404:
		return "Invalid Request"
	case 405:
		return "Unsupported Service"
	case 406:
		return "Unsupported Extension"
	case 407:
		return "Invalid Attribute Value"
	case 501:
		return "Administratively Prohibited"
	case 502:
		return "Request Not Routable"
	case 503:
		return "Session Context Not Found"
	case 504:
		return "Session Context Not Removable"
	case 505:
		return "Other Proxy Processing Error"
	case 506:
		return "Resources Unavailable"
	case 507:
		return "Request Initiated"
	case 508:
		return "Multiple Session Selection Unsupported"
	}
	return "unknown"
}
