package mgmt_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"mxedge/edge/mgmt"
)

// FuzzParseRegistration: the regfile decoder never panics, and what it accepts round-trips.
func FuzzParseRegistration(f *testing.F) {
	good := mgmt.Registration{Version: 1, EdgeID: "edge-1", Cloud: "https://c", RegisteredAt: time.Unix(1e9, 0).UTC(),
		Certificate: "/s/edge.crt", Key: "/s/edge.key", CABundle: "/s/ca.pem", Config: "/s/cloud.yaml"}
	b, _ := json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1,"edge_id":"x","extra":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := mgmt.ParseRegistration(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := mgmt.ParseRegistration(again)
		if err != nil {
			t.Fatalf("re-encoded regfile refused: %v", err)
		}
		if a, _ := json.Marshal(r2); !bytes.Equal(a, again) {
			t.Fatalf("round trip changed the regfile:\n%s\n%s", again, a)
		}
	})
}

func TestParseRegistration(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"good", `{"version":1,"edge_id":"e","cloud":"https://c","registered_at":"2026-11-22T00:00:00Z","certificate":"c","key":"k","ca_bundle":"a","config":"y"}`, true},
		{"newer version", `{"version":2,"edge_id":"e","cloud":"https://c","certificate":"c","key":"k","ca_bundle":"a","config":"y"}`, false},
		{"missing key", `{"version":1,"edge_id":"e","cloud":"https://c","certificate":"c","ca_bundle":"a","config":"y"}`, false},
		{"unknown field", `{"version":1,"edge_id":"e","cloud":"https://c","certificate":"c","key":"k","ca_bundle":"a","config":"y","x":1}`, false},
		{"not json", `edge`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mgmt.ParseRegistration([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
