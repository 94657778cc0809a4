package config_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"mxedge/edge/config"
)

// TestRADIUSVersion: tls.radius_version sets the ALPN list of a RadSec TLS block (RFC 9765):
// allow by default (radius/1.1 then radius/1.0), off offers nothing, require only radius/1.1; a
// wrong value or require with min_version 1.2 is an error naming file, line and field.
func TestRADIUSVersion(t *testing.T) {
	_, lab := labConfig(t)
	doc := radsecDoc(lab, "", "      cert_names: [\"*\"]\n")
	set := func(v string) string {
		return strings.Replace(doc, "ca: "+lab.CAFile+"}", "ca: "+lab.CAFile+", radius_version: "+v+"}", 2)
	}
	for _, tc := range []struct {
		doc  string
		want []string
	}{
		{doc, []string{"radius/1.1", "radius/1.0"}},
		{set("allow"), []string{"radius/1.1", "radius/1.0"}},
		{set("off"), nil},
		{set("require"), []string{"radius/1.1"}},
	} {
		c, err := config.Parse("m.yaml", []byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string][]string{"upstream": c.Built().Pool.Upstreams[0].TLS.NextProtos, "listener": c.Built().Listener.TLS.NextProtos} {
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: NextProtos %q, want %q", name, got, tc.want)
			}
		}
	}
	_, err := config.Parse("m.yaml", []byte(set("1.1")))
	if err == nil || !regexp.MustCompile(`m\.yaml:\d+.*upstreams\.tls\.radius_version: "1\.1" is not one of allow, off, require`).MatchString(err.Error()) {
		t.Fatalf("radius_version 1.1: %v", err)
	}
	bad := strings.Replace(set("require"), "radius_version: require}", "radius_version: require, min_version: \"1.2\"}", 1)
	if _, err := config.Parse("m.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "upstreams.tls.min_version: 1.2 contradicts radius_version: require") {
		t.Fatalf("require with min_version 1.2: %v", err)
	}
}
