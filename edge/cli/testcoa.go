package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"mxedge/proxy/packet"
)

// ErrNAKed: the server answered CoA-NAK or Disconnect-NAK (exit non-zero, like radclient).
var ErrNAKed = errors.New("test coa: refused (NAK)")

// testCoAFlags are the options of `mxedge test coa`.
type testCoAFlags struct {
	testAuthFlags            // server, secret, RadSec material, timeout, retries, --attr
	nasIP, session, framedIP string
}

func newTestCoACmd() *cobra.Command {
	f := &testCoAFlags{}
	cmd := &cobra.Command{
		Use:   "coa disconnect|coa",
		Short: "Send one Disconnect-Request or CoA-Request (RFC 5176) and print the answer by attribute name",
		Long: `coa is a radclient-style Dynamic Authorization client, for mxedge's listener (UDP 3799) or a NAS:
it sends one Disconnect-Request ("disconnect") or CoA-Request ("coa") naming the NAS (--nas-ip,
--nas-id) and the session (--mac as Calling-Station-Id, --user, --session as Acct-Session-Id, --ip
as Framed-IP-Address), with Message-Authenticator and any --attr (e.g. -a 'Cisco-AVPair =
"subscriber:command=reauthenticate"'), and prints the ACK or NAK (Error-Cause by name). Over
RadSec with --radsec like test auth. The exit status is 0 for an ACK.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var code packet.Code
			switch args[0] {
			case "disconnect":
				code = packet.CodeDisconnectRequest
			case "coa":
				code = packet.CodeCoARequest
			default:
				return fmt.Errorf("%w: %q: want disconnect or coa", ErrUsage, args[0])
			}
			return runTestCoA(cmd.Context(), cmd.OutOrStdout(), f, code)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "127.0.0.1:3799", "server host:port")
	fl.StringVar(&f.secret, "secret", "", `shared secret (RadSec default "radsec")`)
	fl.BoolVar(&f.radsec, "radsec", false, "use RadSec (RADIUS over TLS, RFC 6614)")
	fl.StringVar(&f.ca, "ca", "", "CA bundle (PEM) to verify the RadSec server")
	fl.StringVar(&f.cert, "cert", "", "client certificate (PEM) for RadSec")
	fl.StringVar(&f.key, "key", "", "client key (PEM) for --cert")
	fl.StringVar(&f.name, "server-name", "", "name the RadSec server certificate must carry (default: the --server host)")
	fl.StringVar(&f.nasIP, "nas-ip", "", "NAS-IP-Address (or NAS-IPv6-Address) of the NAS holding the session")
	fl.StringVar(&f.nasID, "nas-id", "", "NAS-Identifier of the NAS holding the session")
	fl.StringVar(&f.mac, "mac", "", "Calling-Station-Id, as the NAS sends it")
	fl.StringVar(&f.user, "user", "", "User-Name")
	fl.StringVar(&f.session, "session", "", "Acct-Session-Id")
	fl.StringVar(&f.framedIP, "ip", "", "Framed-IP-Address")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "wait for the answer (UDP: split across retries; a relay may retransmit to the NAS for seconds)")
	fl.IntVar(&f.retries, "retries", 1, "UDP retransmissions")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the round-trip time and the request sent")
	fl.StringArrayVarP(&f.attrs, "attr", "a", nil, `add an attribute by dictionary name, as radclient reads it; repeatable`)
	return cmd
}

func runTestCoA(ctx context.Context, out io.Writer, f *testCoAFlags, code packet.Code) error {
	// The checks test auth makes of the transport flags and --attr, on a copy that asks for
	// Status-Server (--mac and --user mean session attributes here, not PAP or MAB).
	v := f.testAuthFlags
	v.user, v.password, v.mac, v.eapTLS, v.status = "", "", "", false, true
	if _, err := v.mode(); err != nil {
		return err
	}
	f.extra = v.extra
	var nasIP netip.Addr
	if f.nasIP != "" {
		a, err := netip.ParseAddr(f.nasIP)
		if err != nil {
			return fmt.Errorf("%w: --nas-ip %q: %w", ErrUsage, f.nasIP, err)
		}
		nasIP = a
	}
	var framed netip.Addr
	if f.framedIP != "" {
		a, err := netip.ParseAddr(f.framedIP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%w: --ip %q: want an IPv4 address", ErrUsage, f.framedIP)
		}
		framed = a
	}
	var ex exchanger
	var err error
	if f.radsec {
		ex, err = dialRadSec(ctx, &f.testAuthFlags)
	} else {
		ex, err = dialUDP(&f.testAuthFlags)
	}
	if err != nil {
		return err
	}
	defer ex.close()
	start := time.Now()
	req, resp, err := ex.exchange(ctx, func(dst []byte, id uint8) (packet.Packet, error) {
		b := packet.New(dst, code, id, nil)
		b.AddMA()
		switch {
		case nasIP.Is4():
			b.Add(packet.AttrNASIPAddress, nasIP.AsSlice())
		case nasIP.Is6():
			b.Add(packet.AttrNASIPv6Address, nasIP.AsSlice())
		}
		if f.nasID != "" {
			b.AddString(packet.AttrNASIdentifier, f.nasID)
		}
		if f.session != "" {
			b.AddString(packet.AttrAcctSessionID, f.session)
		}
		if f.user != "" {
			b.AddString(packet.AttrUserName, f.user)
		}
		if f.mac != "" {
			b.AddString(packet.AttrCallingStationID, f.mac)
		}
		if framed.IsValid() {
			b.Add(8, framed.AsSlice()) // Framed-IP-Address
		}
		b.AddUint32(55, uint32(time.Now().Unix())) // Event-Timestamp (RFC 5176 §3.5)
		f.addExtra(&b)
		return b.Finish(ex.secret(), nil)
	})
	if err != nil {
		return err
	}
	if f.verbose {
		fmt.Fprintf(out, "Sent %s (id %d) to %s\n", req.Code(), req.ID(), ex.peer())
	}
	fmt.Fprintf(out, "Received %s from %s", resp.Code(), ex.peer())
	if f.verbose {
		fmt.Fprintf(out, " (id %d) in %s", resp.ID(), time.Since(start).Round(10*time.Microsecond))
	}
	fmt.Fprintln(out)
	writeReplyAttrs(out, resp)
	if c := resp.Code(); c == packet.CodeCoANAK || c == packet.CodeDisconnectNAK {
		return ErrNAKed
	}
	return nil
}
