package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxedge/edge/config"
)

const eduroamDoc = `
eduroam:
  realms: [myuniversity.edu]
  operator_name: 1myuniversity.edu
  ssids: [eduroam, eduroam-test]
  national_servers:
    - name: nro1
      address: 192.0.2.10:1812
      secret: national
routes:
  - name: contractors
    realm_regexps: ['contractor[0-9]+\.example']
    reject: true
    reply_message: contractors use the guest SSID
`

// TestCheckRoute: mxedge check --route prints the route a sample request takes.
func TestCheckRoute(t *testing.T) {
	raw, err := os.ReadFile(labConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	// The lab has an eduroam preset of its own: replace it.
	doc, _, _ = strings.Cut(doc, "# eduroam (lab)")
	path := filepath.Join(t.TempDir(), "eduroam.yaml")
	if err := os.WriteFile(path, []byte(doc+eduroamDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sample, want string
	}{
		{"User-Name=alice@example.org,Called-Station-Id=AA-BB-CC-DD-EE-FF:eduroam",
			"route: route eduroam-visitor (#6): pool eduroam-national, adds Operator-Name 1myuniversity.edu, requests Chargeable-User-Identity, F-Ticks logged"},
		{"User-Name=Bob@Staff.MyUniversity.edu,Called-Station-Id=AA-BB-CC-DD-EE-FF:eduroam-test",
			"route: route eduroam-home (#4): pool default (the cloud NAC)"},
		{"User-Name=MYUNIVERSITY\\bob,Called-Station-Id=aabb.ccdd.eeff:eduroam",
			"route: route eduroam-visitor (#6)"}, // DOMAIN\user: the realm is the NetBIOS domain, not ours
		{"User-Name=bob,Called-Station-Id=AA-BB-CC-DD-EE-FF:eduroam",
			`route: route eduroam-no-realm (#5): Access-Reject, Reply-Message "eduroam needs an identity with a realm (user@realm)"`},
		{"User-Name=bob@myuniversity.edu,src=192.0.2.10",
			"route: route eduroam-home-roaming (#2): pool default (the cloud NAC)"},
		{"User-Name=bob@elsewhere.example,src=192.0.2.10",
			`route: route eduroam-unknown-realm (#3): Access-Reject, Reply-Message "unknown realm"`},
		{"User-Name=bob@elsewhere.example,src=192.0.2.10,Operator-Name=1myuniversity.edu",
			"route: route eduroam-unknown-realm (#3): refused: the request already crossed this edge (loop)"},
		{"User-Name=x@Contractor7.example,type=accounting",
			`route: route contractors (#1): Access-Reject, Reply-Message "contractors use the guest SSID"`},
		{"User-Name=alice@example.org,Called-Station-Id=AA-BB-CC-DD-EE-FF:corp",
			"route: no route matched: default pool (the cloud NAC)"},
	}
	for _, tc := range tests {
		t.Run(tc.sample, func(t *testing.T) {
			out, err := execute(t, "check", "--config", path, "--route", tc.sample)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output %q, want %q", out, tc.want)
			}
		})
	}
	t.Run("bad sample", func(t *testing.T) {
		if _, err := execute(t, "check", "--config", path, "--route", "Usr-Name=x"); !errors.Is(err, ErrUsage) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("errors name file, line and field", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(bad, []byte(doc+strings.Replace(strings.Replace(eduroamDoc, "1myuniversity.edu", "myuniversity.edu", 1), "reject: true", "discover: true", 1)), 0o600)
		_, err := execute(t, "check", "--config", bad)
		if !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("err = %v", err)
		}
		for _, want := range []string{"eduroam.operator_name: operator name \"myuniversity.edu\": must be \"1\" followed by a domain name",
			"routes[0].discover: needs RFC 7585 dynamic discovery: set discovery.enabled: true", "routes[0].reply_message: only with reject"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("missing %q in:\n%v", want, err)
			}
		}
	})
}
