package survival

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/proxy/packet"
)

// fakeEdge answers MAB requests like the edge would, with faults: every dropEvery-th request is
// not answered and every wrongEvery-th gets the wrong VLAN (0 disables either).
func fakeEdge(tb testing.TB, secret string, cachedVLAN, defaultVLAN string, dropEvery, wrongEvery int) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, packet.MaxLen)
		for n := 1; ; n++ {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := packet.Parse(buf[:k])
			if err != nil || packet.CheckRequestMA(req, []byte(secret)) != packet.MAValid {
				tb.Errorf("fake edge: bad request: %v", err)
				continue
			}
			if dropEvery > 0 && n%dropEvery == 0 {
				continue
			}
			csi, _ := req.Attr(packet.AttrCallingStationID)
			vlan := defaultVLAN
			if strings.HasPrefix(string(csi), "02-00-00-") { // MAC(0, …): cached
				vlan = cachedVLAN
			}
			if wrongEvery > 0 && n%wrongEvery == 0 {
				vlan = "999"
			}
			b := packet.NewResponse(nil, req, packet.CodeAccessAccept)
			b.AddTagged(packet.AttrTunnelPrivateGroupID, 1, []byte(vlan))
			resp, err := b.Finish([]byte(secret), req.Authenticator())
			if err != nil {
				tb.Errorf("fake edge: %v", err)
				return
			}
			_, _ = pc.WriteTo(resp, from)
		}
	})
	return pc.LocalAddr().String()
}

func TestLoadMABCounts(t *testing.T) {
	tests := []struct {
		name              string
		drop, wrong       int
		wantLost, wantBad int
	}{
		{"all answered", 0, 0, 0, 0},
		{"every 10th dropped", 10, 0, 40, 0},
		{"every 8th wrong VLAN", 0, 8, 0, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeEdge(t, "s3cret", CachedVLAN, "41", tt.drop, tt.wrong)
			res, err := LoadMAB(t.Context(), MABLoadOptions{Addr: addr, Secret: "s3cret", Rate: 400,
				Duration: time.Second, Sockets: 4, Cached: 50, HitVLAN: CachedVLAN, MissVLAN: "41",
				Drain: 300 * time.Millisecond, LateAfter: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 400 || res.Lost != tt.wantLost || res.Wrong != tt.wantBad || res.Invalid != 0 ||
				res.Answered != 400-tt.wantLost-tt.wantBad || res.Late != 0 {
				t.Fatalf("got %+v; want 400 sent, %d lost, %d wrong", res, tt.wantLost, tt.wantBad)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Errorf("percentiles out of order: %v %v %v", res.P50, res.P99, res.Max)
			}
			if r := res.SendRate(); r < 380 || r > 420 {
				t.Errorf("send rate %.0f, want about 400", r)
			}
		})
	}
}

func TestMABRequest(t *testing.T) {
	secret := []byte("s3cret")
	auth := []byte("0123456789abcdef")
	req, err := MABRequest(nil, 7, auth, "02:00:00:00:01:02", secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := packet.Parse(req); err != nil {
		t.Fatal(err)
	}
	if packet.CheckRequestMA(req, secret) != packet.MAValid {
		t.Error("Message-Authenticator does not verify")
	}
	user, _ := req.Attr(packet.AttrUserName)
	csi, _ := req.Attr(packet.AttrCallingStationID)
	pw, _ := req.Attr(packet.AttrUserPassword)
	plain, err := packet.DecryptUserPassword(nil, pw, secret, auth)
	if err != nil {
		t.Fatal(err)
	}
	if string(user) != "020000000102" || string(csi) != "02-00-00-00-01-02" || strings.TrimRight(string(plain), "\x00") != "020000000102" {
		t.Errorf("User-Name %q, Calling-Station-Id %q, password %q", user, csi, plain)
	}
}
