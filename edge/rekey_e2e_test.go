package edge_test

import (
	"encoding/hex"
	"testing"
)

// mpskPassphrase is what FreeRADIUS hides in Aruba-MPSK-Passphrase (14823/44, encrypt=2) with the
// RadSec secret and mxedge's upstream request; the NAS must read it back with its own secret.
const mpskPassphrase = "correct horse battery staple"

var mpskReply = []string{
	`Tunnel-Password = "tunnel-secret"`,
	`Aruba-MPSK-Passphrase = 0x` + hex.EncodeToString([]byte(mpskPassphrase)),
}

// TestE2ESaltedVendorAttrRekeyed: FreeRADIUS, as the cloud, answers with Aruba-MPSK-Passphrase and
// Tunnel-Password salt-encrypted under the RadSec secret; radclient, as the NAS, decrypts both
// with the NAS secret after mxedge re-keyed them (RFC 2868 §3.5), and prints the originals.
func TestE2ESaltedVendorAttrRekeyed(t *testing.T) {
	x := startE2E(t, 1, nil)
	r := radclient(t, x.auth, "auth", nasSecret, []string{
		`User-Name = "mpsk-user"`, `User-Password = "pw"`, `Message-Authenticator = 0x00`,
		`Calling-Station-Id = "02-00-00-00-00-44"`,
	})[0]
	if r.Code != "Access-Accept" {
		t.Fatalf("got %q: %+v", r.Code, r.Attrs)
	}
	wantAttr(t, r, "Aruba-MPSK-Passphrase", "0x"+hex.EncodeToString([]byte(mpskPassphrase)))
	wantAttr(t, r, "Tunnel-Password", "tunnel-secret")
}
