package edge_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// TestE2EFrontDoor: radclient's CHAP, and CHAP MAB as HPE/Aruba switches send it, through mxedge
// to FreeRADIUS (which checks the CHAP response against the challenge it sees); accounting at the
// 4096-octet limit; and malformed requests with a valid Message-Authenticator, which mxedge drops
// without costing the RadSec connection to FreeRADIUS.
func TestE2EFrontDoor(t *testing.T) {
	x := startE2E(t, 1, nil)
	st := x.edge.Server().Stats()

	t.Run("CHAP accept", func(t *testing.T) {
		r := radclient(t, x.auth, "auth", nasSecret, []string{
			`User-Name = "alice"`, `CHAP-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`,
		})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q: %+v", r.Code, r.Attrs)
		}
		wantAttr(t, r, "Tunnel-Private-Group-Id", "300")
	})
	t.Run("CHAP wrong password rejected", func(t *testing.T) {
		r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `CHAP-Password = "nope"`, `Message-Authenticator = 0x00`})[0]
		if r.Code != "Access-Reject" {
			t.Fatalf("got %q", r.Code)
		}
	})
	t.Run("CHAP MAB", func(t *testing.T) {
		// HPE/Aruba MAC authentication with CHAP: User-Name and the CHAP secret are the MAC.
		r := radclient(t, x.auth, "auth", nasSecret, []string{
			`User-Name = "aabbccddeeff"`, `CHAP-Password = "aabbccddeeff"`, `Calling-Station-Id = "AA-BB-CC-DD-EE-FF"`,
			`NAS-Port-Type = Ethernet`, `Message-Authenticator = 0x00`,
		})[0]
		if r.Code != "Access-Accept" {
			t.Fatalf("got %q: %+v", r.Code, r.Attrs)
		}
		wantAttr(t, r, "Tunnel-Private-Group-Id", "400")
	})

	t.Run("accounting at the size limit", func(t *testing.T) {
		// Without Message-Authenticator or Acct-Delay-Time, 4062 octets is the most that still fits
		// in 4096 once forwarded and, if spooled, replayed: it is acknowledged by FreeRADIUS; one
		// octet more is refused, not acknowledged.
		build := func(size int, session string) []byte {
			b := packet.New(nil, packet.CodeAccountingRequest, 3, nil)
			b.AddUint32(packet.AttrAcctStatusType, 1)
			b.AddString(packet.AttrAcctSessionID, session)
			b.AddString(packet.AttrUserName, "alice")
			for r := size - b.Len(); r > 0; r = size - b.Len() {
				v := r - 2
				if r > 255 {
					v = min(253, r-4)
				}
				b.Add(packet.AttrClass, make([]byte, v))
			}
			p, err := b.Finish([]byte(nasSecret), nil)
			if err != nil || len(p) != size {
				t.Fatalf("built %d octets: %v", len(p), err)
			}
			return p
		}
		drops := st.Dropped[proxy.DropTooLongToForward].Load()
		if r := exchangeUDP(t, "127.0.0.1:0", x.acct, build(4063, "big-2"), 500*time.Millisecond); r != nil {
			t.Fatalf("4063 octets answered with code %d", r[0])
		}
		if st.Dropped[proxy.DropTooLongToForward].Load() != drops+1 {
			t.Fatal("4063 octets not refused as too-long-to-forward")
		}
		r := exchangeUDP(t, "127.0.0.1:0", x.acct, build(4062, "big-1"), 5*time.Second)
		if r == nil || r[0] != byte(packet.CodeAccountingResponse) {
			t.Fatalf("4062 octets not acknowledged: %v", r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		recs, err := x.fr[0].WaitAccounting(ctx, 1)
		if err != nil || recs[len(recs)-1].SessionID() != "big-1" {
			t.Fatalf("FreeRADIUS accounting: %v %+v", err, recs)
		}
	})

	// Each is signed correctly; only its content is wrong. Measured with the front door's checks
	// disabled: FreeRADIUS 3.2.1 answers the malformed EAP with Access-Reject at once, and goes
	// silent on the RadSec connection for attribute type 0 and for more than its max_attributes
	// (200), so that mxedge declared the connection dead after 2.2 s and answered locally.
	malformed := []struct {
		name   string
		add    func(b *packet.Builder)
		reason proxy.DropReason
	}{
		{"EAP Length above the attribute", func(b *packet.Builder) {
			// An EAP-Response/Identity whose Length says 40 octets while the attribute holds 16.
			b.Add(packet.AttrEAPMessage, []byte{2, 1, 0, 40, 1, 'h', 'o', 's', 't', '/', 'l', 'a', 'p', 't', 'o', 'p'})
		}, proxy.DropMalformedEAP},
		{"attribute type 0", func(b *packet.Builder) { b.AddString(0, "x") }, proxy.DropMalformed},
		{"250 attributes", func(b *packet.Builder) {
			for range 249 {
				b.AddString(packet.AttrClass, "c")
			}
		}, proxy.DropTooManyAttributes},
	}
	for _, tt := range malformed {
		t.Run(tt.name+" dropped, connection kept", func(t *testing.T) {
			up := x.edge.Router().Pool().Upstreams()[0]
			before := up.Status()
			if before.State != proxy.StateUp {
				t.Fatalf("upstream not up: %+v", before)
			}
			drops := st.Dropped[tt.reason].Load()
			fwd := st.Forwarded.Load()
			var auth [16]byte
			rand.Read(auth[:])
			b := packet.New(nil, packet.CodeAccessRequest, 9, auth[:])
			b.AddString(packet.AttrUserName, "alice")
			tt.add(&b)
			b.AddMA()
			p, err := b.Finish([]byte(nasSecret), nil)
			if err != nil {
				t.Fatal(err)
			}
			if packet.CheckRequestMA(p, []byte(nasSecret)) != packet.MAValid {
				t.Fatal("test packet's Message-Authenticator does not verify")
			}
			if r := exchangeUDP(t, "127.0.0.1:0", x.auth, p, 500*time.Millisecond); r != nil {
				t.Fatalf("answered with code %d", r[0])
			}
			if st.Dropped[tt.reason].Load() != drops+1 || st.Forwarded.Load() != fwd {
				t.Fatalf("not dropped at the front door as %v", tt.reason)
			}
			// The next request is answered by FreeRADIUS at once, on the same connection.
			start := time.Now()
			r := radclient(t, x.auth, "auth", nasSecret, []string{`User-Name = "alice"`, `User-Password = "s3cret pass\"word"`, `Message-Authenticator = 0x00`})[0]
			if r.Code != "Access-Accept" || time.Since(start) > time.Second {
				t.Fatalf("request after the malformed one: %q after %v", r.Code, time.Since(start))
			}
			after := up.Status()
			if after.State != proxy.StateUp || after.Failures != before.Failures || !after.Since.Equal(before.Since) || after.Answered <= before.Answered {
				t.Fatalf("upstream connection disturbed: before %+v, after %+v", before, after)
			}
		})
	}
}
