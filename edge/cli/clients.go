package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mxedge/edge/control"
)

func newClientsCmd() *cobra.Command { return newClientsCmdEnv(defaultOpsEnv()) }

func newClientsCmdEnv(env opsEnv) *cobra.Command {
	var socket string
	var asJSON bool
	var o outputFlag
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "List the NAS clients with their request and error counters",
		Long: `clients prints every NAS client of the running mxedge (RADIUS/UDP clients by address, RadSec
peers as radsec:NAME) with the requests it sent, the responses it got, and what was dropped:
BAD-AUTH counts requests whose Message-Authenticator or accounting authenticator did not verify,
which almost always means the NAS and mxedge disagree on the shared secret; NO-MA counts
Access-Requests without Message-Authenticator (BlastRADIUS protection: enable it on the NAS).
-o json and -o yaml print mxedge.clients.v1 (docs/output.md); --json the control socket's array.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			cs, err := dialDaemon(socket, env).Clients(cmd.Context())
			if err != nil {
				return notRunning(socket, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONLine(out, cs)
			}
			if format != formatText {
				return writeDoc(out, format, clientsToDoc(cs, env.now()))
			}
			return writeClients(out, cs, env.now())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the control socket's JSON (see -o json)")
	addOutputFlag(cmd, &o, false)
	return cmd
}

// clientsDoc is the schema mxedge.clients.v1 (docs/output.md).
type clientsDoc struct {
	Schema  string      `json:"schema"`
	Clients []clientDoc `json:"clients"`
}

type clientDoc struct {
	Name                        string  `json:"name"`
	Address                     string  `json:"address"`
	Vendor                      string  `json:"vendor"`
	Site                        string  `json:"site"`
	Requests                    uint64  `json:"requests"`
	Responses                   uint64  `json:"responses"`
	Duplicates                  uint64  `json:"duplicates"`
	BadAuthenticator            uint64  `json:"bad_authenticator"`
	MissingMessageAuthenticator uint64  `json:"missing_message_authenticator"`
	Malformed                   uint64  `json:"malformed"`
	LastSeenAt                  *string `json:"last_seen_at"`
	LastSeenAgoSeconds          *int64  `json:"last_seen_ago_seconds"`
}

func clientsToDoc(cs []control.NASClient, now time.Time) clientsDoc {
	d := clientsDoc{Schema: "mxedge.clients.v1", Clients: []clientDoc{}}
	for _, c := range cs {
		cd := clientDoc{Name: c.Name, Address: c.Address, Vendor: c.Vendor, Site: c.Site, Requests: c.Requests,
			Responses: c.Responses, Duplicates: c.Duplicates, BadAuthenticator: c.BadAuthenticator,
			MissingMessageAuthenticator: c.MissingMA, Malformed: c.Malformed, LastSeenAt: atTime(c.LastSeen)}
		if !c.LastSeen.IsZero() {
			ago := int64(now.Sub(c.LastSeen) / time.Second)
			cd.LastSeenAgoSeconds = &ago
		}
		d.Clients = append(d.Clients, cd)
	}
	return d
}

func writeClients(w io.Writer, cs []control.NASClient, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSITE\tREQUESTS\tRESPONSES\tBAD-AUTH\tNO-MA\tMALFORMED\tDUPLICATES\tLAST SEEN")
	var bad, noMA []string
	for _, c := range cs {
		last := "never"
		if !c.LastSeen.IsZero() {
			last = ago(now, c.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", cell(c.Name), cell(c.Address), cell(c.Site),
			c.Requests, c.Responses, c.BadAuthenticator, c.MissingMA, c.Malformed, c.Duplicates, last)
		if c.BadAuthenticator > 0 {
			bad = append(bad, c.Name)
		}
		if c.MissingMA > 0 {
			noMA = append(noMA, c.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range bad {
		fmt.Fprintf(w, "hint: %s: bad authenticators mean the shared secret differs between the NAS and mxedge\n", n)
	}
	for _, n := range noMA {
		fmt.Fprintf(w, "hint: %s: sends Access-Requests without Message-Authenticator: enable it on the NAS (BlastRADIUS)\n", n)
	}
	if len(cs) == 0 {
		_, err := fmt.Fprintln(w, "no NAS clients configured")
		return err
	}
	return nil
}
