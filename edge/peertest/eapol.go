package peertest

// eapol_test (wpa_supplicant 2.10) as an 802.1X supplicant over RADIUS/UDP.
//
// Quirks:
//   - One authentication per process; -r N repeats it N more times; -t is a
//     timeout for the whole process (default 30 s), so it is scaled by Repeat.
//   - It prints "MPPE keys OK: 1  mismatch: 0" when the MS-MPPE-Recv/Send-Key
//     in the Access-Accept (RFC 2548 §2.4.2, decrypted with the shared secret)
//     match the keys the supplicant derived from the TLS session: through a
//     proxy this proves the keys were re-encrypted with the right secret and
//     authenticator. It ends with "SUCCESS" (exit 0) or "FAILURE" (exit
//     non-zero); the exit status alone decides Success.
//   - TLS 1.3 is off by default in 2.10: phase1="tls_disable_tlsv1_3=0"
//     enables it, and "tls_disable_tlsv1_2=1" then forces it (RFC 9190).
//     FreeRADIUS 3.2.1 warns at start-up that "most supplicants do not support
//     EAP-TLS with TLS 1.3"; wpa_supplicant 2.10 does.
//   - The TLS version negotiated is printed as "SSL: Using TLS version TLSv1.x"
//     (or "OpenSSL: ... TLSv1.3" lines); TLSVersion reports it when found.
//   - fragment_size is the EAP-TLS fragment size of the supplicant (default
//     1398); a small value makes many round trips, which stresses EAP State
//     handling in a proxy.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// EapolOptions configures one eapol_test run.
type EapolOptions struct {
	// Server is the RADIUS server's IP address. Default 127.0.0.1.
	Server string
	// Port is its UDP authentication port.
	Port int
	// Secret is the shared secret.
	Secret string
	// Identity is the EAP identity (and User-Name); AnonymousIdentity, when
	// set, is sent as the outer identity instead.
	Identity, AnonymousIdentity string
	// CACert verifies the server; ClientCert and PrivateKey authenticate the
	// supplicant (EAP-TLS, RFC 5216).
	CACert, ClientCert, PrivateKey string
	// FragmentSize is the EAP-TLS fragment size. Default: wpa_supplicant's.
	FragmentSize int
	// TLS13 enables TLS 1.3 (off by default in wpa_supplicant 2.10).
	TLS13 bool
	// TLS13Only disables TLS 1.2 as well, forcing TLS 1.3.
	TLS13Only bool
	// TLS12Only disables TLS 1.3 explicitly.
	TLS12Only bool
	// CallingStationID is the supplicant's MAC ("-M"). Default eapol_test's
	// 02:00:00:00:00:01.
	CallingStationID string
	// CalledStationID, when set, is sent as Called-Station-Id ("MAC:SSID", RFC 3580 §3.20).
	CalledStationID string
	// Timeout bounds one authentication. Default 10 s.
	Timeout time.Duration
	// Repeat is the number of additional authentications (-r).
	Repeat int
	// Dir is where the configuration file goes. Default: a temporary
	// directory removed afterwards.
	Dir string
}

// EapolResult is the outcome of an eapol_test run.
type EapolResult struct {
	// Success is eapol_test's verdict (exit status 0, "SUCCESS").
	Success bool
	// MPPEOK is true when eapol_test printed "MPPE keys OK: N  mismatch: 0"
	// with N the number of authentications (1 + Repeat).
	MPPEOK bool
	// TLSVersion is the negotiated version ("TLSv1.2", "TLSv1.3") if printed.
	TLSVersion string
	// Accept holds the attributes of the last Access-Accept, as eapol_test
	// printed them (RADIUS type, name, value: text for printable strings,
	// otherwise hex).
	Accept []EapolAttr
	// Output is eapol_test's combined output.
	Output string
}

// EapolAttr is one attribute of a RADIUS message printed by eapol_test.
type EapolAttr struct {
	Type  int
	Name  string
	Value string
}

// Get returns the first value of the attribute of the given name in the
// Access-Accept ("" if absent).
func (r EapolResult) Get(name string) string {
	for _, a := range r.Accept {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

var (
	mppeOKRe     = regexp.MustCompile(`MPPE keys OK: (\d+)\s+mismatch: (\d+)`)
	tlsVersionRe = regexp.MustCompile(`(?:SSL: Using TLS version|tls_connection_get_protocol_version[^T]*|OpenSSL: Handshake finished - resumed=\d+ -) ?(TLSv1(?:\.[0-3])?)`)
)

// EapolTest runs eapol_test once. A failed authentication is a result with
// Success false, not an error; an error means eapol_test could not run or
// was killed by ctx.
func EapolTest(ctx context.Context, o EapolOptions) (EapolResult, error) {
	if o.Port == 0 {
		return EapolResult{}, errors.New("peertest: eapol_test: Port is required")
	}
	if o.Server == "" {
		o.Server = "127.0.0.1"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	bin, err := LookPath("eapol_test")
	if err != nil {
		return EapolResult{}, err
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "peertest-eapol-")
		if err != nil {
			return EapolResult{}, fmt.Errorf("peertest: eapol_test: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	conf, err := os.CreateTemp(dir, "eapol-*.conf")
	if err != nil {
		return EapolResult{}, fmt.Errorf("peertest: eapol_test: %w", err)
	}
	_, werr := conf.WriteString(eapolConfig(o))
	if err := errors.Join(werr, conf.Close()); err != nil {
		return EapolResult{}, fmt.Errorf("peertest: eapol_test: %w", err)
	}
	runs := o.Repeat + 1
	total := time.Duration(runs) * o.Timeout
	secs := int((total + time.Second - 1) / time.Second)
	args := []string{"-c", conf.Name(), "-a", o.Server, "-p", strconv.Itoa(o.Port), "-s", o.Secret,
		"-t", strconv.Itoa(secs)}
	if o.Repeat > 0 {
		args = append(args, "-r", strconv.Itoa(o.Repeat))
	}
	if o.CallingStationID != "" {
		args = append(args, "-M", o.CallingStationID)
	}
	if o.CalledStationID != "" {
		args = append(args, "-N30:s:"+o.CalledStationID)
	}
	cctx, cancel := context.WithTimeout(ctx, total+5*time.Second)
	defer cancel()
	out, runErr := exec.CommandContext(cctx, bin, args...).CombinedOutput()
	res := EapolResult{Output: string(out)}
	if cctx.Err() != nil {
		return res, fmt.Errorf("peertest: eapol_test: %w", cctx.Err())
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return res, fmt.Errorf("peertest: eapol_test: %w", runErr)
	}
	res.Success = runErr == nil && strings.Contains(res.Output, "SUCCESS")
	res.MPPEOK = mppeAllOK(res.Output, runs)
	if m := tlsVersionRe.FindStringSubmatch(res.Output); m != nil {
		res.TLSVersion = m[1]
	}
	res.Accept = parseEapolAccept(res.Output)
	return res, nil
}

var (
	eapolAttrRe  = regexp.MustCompile(`^\s+Attribute (\d+) \(([^)]*)\) length=\d+`)
	eapolValueRe = regexp.MustCompile(`^\s+Value: (.*)$`)
)

// parseEapolAccept returns the attributes of the last Access-Accept in
// eapol_test's debug output:
//
//	RADIUS message: code=2 (Access-Accept) identifier=4 length=193
//	   Attribute 81 (Tunnel-Private-Group-Id) length=5
//	      Value: 333030
//	   Attribute 1 (User-Name) length=16
//	      Value: 'client.example'
func parseEapolAccept(out string) []EapolAttr {
	var last, cur []EapolAttr
	in := false
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "RADIUS message: ") {
			if in {
				last = cur
			}
			in = strings.Contains(line, "(Access-Accept)")
			cur = []EapolAttr{}
			continue
		}
		if !in {
			continue
		}
		if m := eapolAttrRe.FindStringSubmatch(line); m != nil {
			t, _ := strconv.Atoi(m[1])
			cur = append(cur, EapolAttr{Type: t, Name: m[2]})
			continue
		}
		if m := eapolValueRe.FindStringSubmatch(line); m != nil && len(cur) > 0 {
			v := m[1]
			if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
				v = v[1 : len(v)-1]
			}
			cur[len(cur)-1].Value = v
			continue
		}
		if !strings.HasPrefix(line, " ") {
			last, in = cur, false
		}
	}
	if in {
		last = cur
	}
	return last
}

// mppeAllOK reports whether all runs matched their MPPE keys. eapol_test
// prints one cumulative line at the end: "MPPE keys OK: <runs>  mismatch: 0".
func mppeAllOK(out string, runs int) bool {
	ms := mppeOKRe.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return false
	}
	last := ms[len(ms)-1]
	return last[1] == strconv.Itoa(runs) && last[2] == "0"
}

// eapolConfig renders a wpa_supplicant network block for EAP-TLS.
func eapolConfig(o EapolOptions) string {
	var b strings.Builder
	b.WriteString("network={\n\tkey_mgmt=WPA-EAP\n\teap=TLS\n")
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "\t%s=%s\n", k, strconv.Quote(v))
		}
	}
	kv("identity", o.Identity)
	kv("anonymous_identity", o.AnonymousIdentity)
	kv("ca_cert", o.CACert)
	kv("client_cert", o.ClientCert)
	kv("private_key", o.PrivateKey)
	var phase1 []string
	switch {
	case o.TLS13Only:
		phase1 = append(phase1, "tls_disable_tlsv1_0=1", "tls_disable_tlsv1_1=1", "tls_disable_tlsv1_2=1", "tls_disable_tlsv1_3=0")
	case o.TLS13:
		phase1 = append(phase1, "tls_disable_tlsv1_3=0")
	case o.TLS12Only:
		phase1 = append(phase1, "tls_disable_tlsv1_3=1")
	}
	if len(phase1) > 0 {
		kv("phase1", strings.Join(phase1, " "))
	}
	if o.FragmentSize > 0 {
		fmt.Fprintf(&b, "\tfragment_size=%d\n", o.FragmentSize)
	}
	b.WriteString("}\n")
	return b.String()
}
