package survival

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"mxedge/bench"
	"mxedge/cache"
	"mxedge/proxy/packet"
)

// EdgeOptions configure one mxedge process in survivability mode.
type EdgeOptions struct {
	Bin string // the mxedge binary. Required.
	Dir string // configuration, cache, spool and log go here. Required.
	// Auth and Acct are the UDP listen addresses "127.0.0.1:PORT". Required.
	Auth, Acct string
	// Secret is the secret of the single NAS client 127.0.0.1 (Message-Authenticator required).
	Secret string
	// Upstream is a RadSec address nothing listens on, so the edge is in survivability mode from
	// the start. Cert/Key/CA are any valid client certificate and CA (they are never used on a
	// live connection). Required.
	Upstream, Cert, Key, CA string
	// DefaultMABVLAN and DefaultDot1XVLAN are the VLANs of clients not in the cache.
	DefaultMABVLAN, DefaultDot1XVLAN string
	// EAPCert, EAPKey and EAPCA configure the local EAP-TLS server (off when EAPCert is empty).
	EAPCert, EAPKey, EAPCA string
	// LogLevel defaults to warn, so that logging is not what is measured.
	LogLevel string
	// Env is added to the process environment (e.g. a GODEBUG setting for a diagnostic run).
	Env []string
	// Metrics is metrics.listen; empty: none.
	Metrics string
	// Sockets and SplitBatch are listen.sockets and listen.split_batch; 0 leaves the defaults.
	Sockets, SplitBatch int
	// Extra is YAML appended to the configuration (e.g. "sessions:\n  enabled: false\n").
	Extra string
}

// CachePath is where the edge's cache file lives; fill it before StartEdge.
func (o EdgeOptions) CachePath() string { return filepath.Join(o.Dir, "cache.db") }

// StartEdge starts mxedge in survivability mode (bench.StartMxedge with a survivability section)
// and waits until ready answers (ready is called with the edge's auth address; e.g. a MAB probe
// that only passes once the edge answers locally). The caller must Stop the process.
func StartEdge(ctx context.Context, o EdgeOptions, ready func(addr string) error) (*bench.Process, error) {
	extra := fmt.Sprintf("survivability:\n  default_mab_vlan: %q\n  default_dot1x_vlan: %q\n", o.DefaultMABVLAN, o.DefaultDot1XVLAN)
	if o.EAPCert != "" {
		extra += fmt.Sprintf("  eap_tls:\n    certificate: %q\n    key: %q\n    ca: %q\n", o.EAPCert, o.EAPKey, o.EAPCA)
	}
	return bench.StartMxedge(ctx, bench.MxedgeOptions{
		Bin: o.Bin, Dir: o.Dir, Auth: o.Auth, Acct: o.Acct, Secret: o.Secret,
		Upstream: o.Upstream, Cert: o.Cert, Key: o.Key, CA: o.CA, LogLevel: o.LogLevel,
		Sockets: o.Sockets, SplitBatch: o.SplitBatch, Metrics: o.Metrics, Extra: extra + o.Extra, Env: o.Env, Ready: ready,
	})
}

// ClosedPort returns "127.0.0.1:PORT" for a TCP port that was free a moment ago and is closed
// now: a connection to it is refused (RST), which is how an unreachable cloud looks here.
func ClosedPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("survival: closed port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// FreeUDP returns a loopback UDP address that was free a moment ago.
func FreeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("survival: free udp port: %w", err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr, nil
}

// MAC returns the i-th benchmark MAC in the locally administered range: 02:00:xx:xx:xx:xx with
// set (0 = in the cache, 1 = not) in the third octet, so hits and misses never collide.
func MAC(set uint8, i uint32) string {
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", set, byte(i>>16), byte(i>>8), byte(i))
}

// CachedVLAN is the VLAN the benchmark stores for every cached MAB client.
const CachedVLAN = "300"

// FillCache writes n MAB records (MAC(0, 0..n-1), VLAN CachedVLAN as the RFC 3580 triplet) into
// the cache file at path through cache.Store.Import (transactions of 1000), before mxedge opens it.
func FillCache(path string, n int) error {
	st, err := cache.Open(cache.Options{Path: path, NoSync: true})
	if err != nil {
		return fmt.Errorf("survival: cache: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		now := time.Now().UTC().Format(time.RFC3339)
		var b strings.Builder
		for i := range n {
			b.Reset()
			m := MAC(0, uint32(i))
			// Tunnel-Type = VLAN (13), Tunnel-Medium-Type = IEEE-802 (6), Tunnel-Private-Group-ID,
			// each with tag 1 (RFC 3580 §3.31, RFC 2868 §3.1).
			fmt.Fprintf(&b, `{"mac":%q,"identity":%q,"method":"mab","nas":"127.0.0.1",`+
				`"attrs":[{"type":64,"tag":1,"value":"00000d"},{"type":65,"tag":1,"value":"000006"},{"type":81,"tag":1,"value":"%x"}],`+
				`"last_authorized":%q}`+"\n", m, strings.ReplaceAll(m, ":", ""), CachedVLAN, now)
			if _, err := io.WriteString(pw, b.String()); err != nil {
				return
			}
		}
		pw.Close()
	}()
	rep, err := st.Import(pr, false)
	pr.Close()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("survival: cache import: %w", err)
	}
	if rep.Imported != n || rep.Bad != 0 {
		return fmt.Errorf("survival: cache import: %d of %d imported, %d bad (%v)", rep.Imported, n, rep.Bad, rep.Errors)
	}
	return nil
}

// MABRequest builds a signed MAB Access-Request the way Aruba, HP and Juniper switches send it:
// Message-Authenticator first, User-Name = User-Password = the MAC without separators,
// Calling-Station-Id = the MAC. auth must be 16 random octets (RFC 2865 §3).
func MABRequest(dst []byte, id uint8, auth []byte, mac string, secret []byte) (packet.Packet, error) {
	user := strings.ReplaceAll(mac, ":", "")
	b := packet.New(dst, packet.CodeAccessRequest, id, auth)
	b.AddMA()
	b.AddString(packet.AttrUserName, user)
	var pw [32]byte
	b.Add(packet.AttrUserPassword, packet.EncryptUserPassword(pw[:0], []byte(user), secret, auth))
	b.AddString(packet.AttrCallingStationID, strings.ToUpper(strings.ReplaceAll(mac, ":", "-")))
	b.AddUint32(packet.AttrServiceType, 10) // Call-Check: RFC 2865 §5.6, the Cisco MAB convention
	return b.Finish(secret, nil)
}

// CheckMABAnswer verifies resp as the answer to a request with authenticator reqAuth and returns
// its VLAN (Tunnel-Private-Group-ID without the tag octet).
func CheckMABAnswer(resp packet.Packet, reqAuth, secret []byte) (string, error) {
	if !packet.CheckResponseAuthenticator(resp, reqAuth, secret) {
		return "", errors.New("survival: response authenticator does not verify")
	}
	if packet.CheckResponseMA(resp, reqAuth, secret) != packet.MAValid {
		return "", errors.New("survival: answer without a valid message-authenticator")
	}
	if resp.Code() != packet.CodeAccessAccept {
		return "", fmt.Errorf("survival: %v, want Access-Accept", resp.Code())
	}
	v, ok := resp.Attr(packet.AttrTunnelPrivateGroupID)
	if !ok {
		return "", nil
	}
	if len(v) > 0 && v[0] <= 0x1f { // RFC 2868 §3.6: an optional tag octet
		v = v[1:]
	}
	return string(v), nil
}

// ProbeMAB sends one MAB request for mac and returns the VLAN of the Access-Accept within 200 ms.
func ProbeMAB(addr, secret, mac string) (string, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return "", fmt.Errorf("survival: probe: %w", err)
	}
	defer conn.Close()
	var auth [packet.AuthLen]byte
	_, _ = rand.Read(auth[:])
	req, err := MABRequest(nil, auth[0], auth[:], mac, []byte(secret))
	if err != nil {
		return "", err
	}
	if _, err := conn.Write(req); err != nil {
		return "", fmt.Errorf("survival: probe: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, packet.MaxLen)
	n, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("survival: probe: %w", err)
	}
	resp, err := packet.Parse(buf[:n])
	if err != nil {
		return "", fmt.Errorf("survival: probe: %w", err)
	}
	return CheckMABAnswer(resp, auth[:], []byte(secret))
}
