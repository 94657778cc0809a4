package packet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"layeh.com/radius"
)

// readHex reads a testdata file of hex octets with # comments.
func readHex(tb testing.TB, path string) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []byte
	s := bufio.NewScanner(f)
	for s.Scan() {
		line, _, _ := strings.Cut(s.Text(), "#")
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(line), " ", ""))
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, b...)
	}
	return out
}

// readFields reads a testdata file of "name value" lines with # comments.
func readFields(tb testing.TB, path string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l, _, _ = strings.Cut(l, "#")
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func renderPacket(d *Dictionary, p Packet) []string {
	var out []string
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return out
		}
		out = append(out, string(d.AppendText(nil, 0, typ, v)))
	}
}

// TestRFC2865Examples runs the worked examples of RFC 2865 §7 through the wire code mxedge
// forwards with (User-Password hiding, Response Authenticator) and through the dictionary.
func TestRFC2865Examples(t *testing.T) {
	secret := []byte("xyzzy5461")
	d := Builtin()
	req := mustParse(t, readHex(t, "../../testdata/rfc2865/section7.1-access-request.hex"))
	accept := mustParse(t, readHex(t, "../../testdata/rfc2865/section7.1-access-accept.hex"))
	hidden, _ := req.Attr(AttrUserPassword)
	pw, err := DecryptUserPassword(nil, hidden, secret, req.Authenticator())
	if err != nil || string(bytes.TrimRight(pw, "\x00")) != "arctangent" {
		t.Errorf("§7.1 User-Password = %q, %v; want arctangent", pw, err)
	}
	if again := EncryptUserPassword(nil, []byte("arctangent"), secret, req.Authenticator()); !bytes.Equal(again, hidden) {
		t.Errorf("§7.1 hiding arctangent gives %x, the example has %x", again, hidden)
	}
	if !CheckResponseAuthenticator(accept, req.Authenticator(), secret) {
		t.Error("§7.1 Access-Accept: Response Authenticator does not verify")
	}
	if CheckResponseAuthenticator(accept, req.Authenticator(), []byte("xyzzy5460")) {
		t.Error("§7.1 Access-Accept verifies with the wrong secret")
	}
	for _, tt := range []struct {
		file string
		want []string
	}{
		{"section7.1-access-request.hex", []string{`User-Name = "nemo"`,
			"User-Password = 0x0dbe708d93d413ce3196e43f782a0aee", "NAS-IP-Address = 192.168.1.16", "NAS-Port = 3"}},
		{"section7.1-access-accept.hex", []string{"Service-Type = Login-User", "Login-Service = Telnet",
			"Login-IP-Host = 192.168.1.3"}},
		{"section7.2-access-request.hex", []string{`User-Name = "flopsy"`,
			"CHAP-Password = 0x16e97557c316185895f293ff6344077275", "NAS-IP-Address = 192.168.1.16", "NAS-Port = 20",
			"Service-Type = Framed-User", "Framed-Protocol = PPP"}},
		{"section7.3-access-challenge.hex", []string{`Reply-Message = "Challenge 32769430.  Enter response at prompt."`,
			"State = 0x3332373639343330"}},
	} {
		p := mustParse(t, readHex(t, "../../testdata/rfc2865/"+tt.file))
		if got := renderPacket(d, p); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s renders\n%s\nwant\n%s", tt.file, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}

// TestRFC2548Vector checks the salt encryption of MS-MPPE-Send-Key against the derived vector in
// testdata/rfc2548 and against layeh.com/radius's implementation of the same scheme.
func TestRFC2548Vector(t *testing.T) {
	f := readFields(t, "../../testdata/rfc2548/ms-mppe-send-key.txt")
	dec := func(k string) []byte {
		b, err := hex.DecodeString(f[k])
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %q %v", k, f[k], err)
		}
		return b
	}
	secret, auth, salt, key, want := []byte(f["secret"]), dec("authenticator"), dec("salt"), dec("key"), dec("encrypted")
	got := EncryptSalted(nil, key, [2]byte(salt), secret, auth)
	if !bytes.Equal(got, want) {
		t.Errorf("EncryptSalted = %x, want %x", got, want)
	}
	plain, err := DecryptSalted(nil, want, secret, auth)
	if err != nil || !bytes.Equal(plain, key) {
		t.Errorf("DecryptSalted = %x, %v; want %x", plain, err, key)
	}
	other, err := radius.NewTunnelPassword(key, salt, secret, auth)
	if err != nil || !bytes.Equal(other, want) {
		t.Errorf("layeh NewTunnelPassword = %x, %v; want %x", other, err, want)
	}
}

// TestSaltedMatchesRadclient: radclient decrypts the encrypt=2 attributes of a reply with the
// secret when it prints them, so a reply whose salted attributes mxedge encrypted must print their
// plaintext.
func TestSaltedMatchesRadclient(t *testing.T) {
	secret := []byte("testing123")
	key := []byte("0123456789abcdef0123456789abcdef")
	received := radclientReply(t, secret, func(req Packet) ([]byte, error) {
		ra := req.Authenticator()
		b := New(nil, CodeAccessAccept, req.ID(), nil)
		b.AddVSA(VendorMicrosoft, 16, EncryptSalted(nil, key, [2]byte{0x80, 1}, secret, ra))
		b.AddVSA(VendorMicrosoft, 17, EncryptSalted(nil, key[:16], [2]byte{0x80, 2}, secret, ra))
		b.AddVSA(14823, 44, EncryptSalted(nil, []byte("psk-passphrase"), [2]byte{0x80, 3}, secret, ra))
		b.Add(AttrTunnelPassword, EncryptSalted([]byte{1}, []byte("tunnel-secret"), [2]byte{0x80, 4}, secret, ra))
		return b.Finish(secret, ra)
	})
	for _, want := range []string{
		"MS-MPPE-Send-Key = 0x" + hex.EncodeToString(key),
		"MS-MPPE-Recv-Key = 0x" + hex.EncodeToString(key[:16]),
		"Aruba-MPSK-Passphrase = 0x" + hex.EncodeToString([]byte("psk-passphrase")),
		`Tunnel-Password:1 = "tunnel-secret"`,
	} {
		if !strings.Contains(received, "\t"+want+"\n") {
			t.Errorf("radclient did not print %s:\n%s", want, received)
		}
	}
}
