package resolve

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseHosts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string][]string
	}{
		{"empty", "", map[string][]string{}},
		{"debian default", "127.0.0.1\tlocalhost\n127.0.1.1\tedge01.lab edge01\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n",
			map[string][]string{
				"localhost": {"127.0.0.1", "::1"}, "edge01.lab": {"127.0.1.1"}, "edge01": {"127.0.1.1"},
				"ip6-localhost": {"::1"}, "ip6-loopback": {"::1"}, "ip6-allnodes": {"ff02::1"},
			}},
		{"comments, case, trailing dot, duplicates", "192.0.2.1 A.Example. a.example # x\n#192.0.2.9 hidden\n192.0.2.1 a.example\n",
			map[string][]string{"a.example": {"192.0.2.1"}}},
		{"bad lines skipped", "not-an-ip host\n192.0.2.1\n 192.0.2.2   ok  \r\n300.1.1.1 bad\n",
			map[string][]string{"ok": {"192.0.2.2"}}},
		{"v4-mapped and zone", "::ffff:192.0.2.3 mapped\nfe80::1%eth0 ll\n",
			map[string][]string{"mapped": {"192.0.2.3"}, "ll": {"fe80::1%eth0"}}},
		{"no final newline", "192.0.2.4 last", map[string][]string{"last": {"192.0.2.4"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseHosts([]byte(tc.in))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for name, want := range tc.want {
				var g []string
				for _, a := range got[name] {
					g = append(g, a.String())
				}
				if !slices.Equal(g, want) {
					t.Errorf("%s: %v, want %v", name, g, want)
				}
			}
		})
	}
}

// Round trip: writing the parsed map back in hosts(5) form parses to the same map.
func TestParseHostsRoundTrip(t *testing.T) {
	in := parseHosts([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost\n192.0.2.1 a b c\n"))
	again := parseHosts([]byte(formatHosts(in)))
	if !equalHosts(in, again) {
		t.Fatalf("round trip: %v → %v", in, again)
	}
}

func formatHosts(m map[string][]netip.Addr) string {
	var b strings.Builder
	for name, as := range m {
		for _, a := range as {
			b.WriteString(a.String() + " " + name + "\n")
		}
	}
	return b.String()
}

func equalHosts(a, b map[string][]netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestHostsFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	h := &hostsFile{path: path}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := h.lookup("x", t0); got != nil {
		t.Fatalf("missing file: %v", got)
	}
	writeFile(t, path, "192.0.2.1 x\n")
	if got := h.lookup("x", t0.Add(time.Second)); got != nil {
		t.Fatal("re-read before the re-check interval")
	}
	if got := h.lookup("x", t0.Add(hostsRecheck)); len(got) != 1 {
		t.Fatalf("not re-read after the interval: %v", got)
	}
	writeFile(t, path, "192.0.2.1 y\n192.0.2.2 x\n")
	h.invalidate()
	if got := h.lookup("x", t0.Add(hostsRecheck+time.Second)); len(got) != 1 || got[0].String() != "192.0.2.2" {
		t.Fatalf("not re-read after invalidate: %v", got)
	}
}

func FuzzParseHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost # c\n"))
	f.Add([]byte("fe80::1%eth0 ll\n::ffff:1.2.3.4 m.\n#x\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := parseHosts(data)
		for name, as := range m {
			if name == "" || name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
				t.Fatalf("bad name %q", name)
			}
			if len(as) == 0 {
				t.Fatalf("name %q without addresses", name)
			}
			for i, a := range as {
				if !a.IsValid() || a.Is4In6() || slices.Contains(as[:i], a) {
					t.Fatalf("%q: bad or duplicate address %v in %v", name, a, as)
				}
			}
		}
		if again := parseHosts([]byte(formatHosts(m))); !equalHosts(m, again) {
			t.Fatalf("round trip differs:\n%v\n%v", m, again)
		}
	})
}
