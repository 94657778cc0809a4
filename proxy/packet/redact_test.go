package packet

import (
	"bytes"
	"strings"
	"testing"
)

// TestRedacted: a request and a reply carrying every kind of secret render with names and
// without one octet of a secret.
func TestRedacted(t *testing.T) {
	secret := []byte("s3cret-s3cret-s3cret")
	auth := bytes.Repeat([]byte{7}, 16)
	b := New(nil, CodeAccessRequest, 1, auth)
	b.AddMA()
	b.AddString(AttrUserName, "bob")
	b.Add(AttrUserPassword, EncryptUserPassword(nil, []byte("hunter2-hunter2"), secret, auth))
	b.Add(AttrCHAPPassword, append([]byte{1}, bytes.Repeat([]byte{0xCC}, 16)...))
	b.AddUint32(AttrNASPort, 7)
	b.AddString(AttrCalledStationID, "AA-BB-CC-DD-EE-FF:corp")
	b.AddTagged(AttrTunnelPassword, 1, EncryptSalted(nil, []byte("tunnel-pw"), [2]byte{0x80, 1}, secret, auth))
	b.AddVSA(VendorMicrosoft, 16, EncryptSalted(nil, bytes.Repeat([]byte{0xAB}, 32), [2]byte{0x80, 2}, secret, auth))
	b.Add(AttrEAPMessage, []byte{2, 1, 0, 6, 13, 0})
	p, err := b.Finish(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := string(Builtin().AppendRedacted(nil, p))
	want := `Message-Authenticator = <16 octets hidden>, User-Name = "bob", User-Password = <16 octets hidden>, ` +
		`CHAP-Password = <17 octets hidden>, NAS-Port = 7, Called-Station-Id = "AA-BB-CC-DD-EE-FF:corp", ` +
		`Tunnel-Password = <19 octets hidden>, MS-MPPE-Send-Key = <50 octets hidden>, EAP-Message = <6 octets>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if v := (Redacted{Packet: p}).LogValue().String(); v != want {
		t.Fatalf("LogValue %s", v)
	}
	for _, leak := range []string{"hunter2", "tunnel-pw", "cccc", "abab", "0x"} {
		if strings.Contains(strings.ToLower(got), leak) {
			t.Errorf("%q leaks into %s", leak, got)
		}
	}
}
