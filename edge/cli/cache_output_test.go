package cli

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCacheListFilters: through the daemon and from the file, each filter selects the entries it
// names, and --limit counts matches.
func TestCacheListFilters(t *testing.T) {
	for _, mode := range []string{"daemon", "direct"} {
		t.Run(mode, func(t *testing.T) {
			fx := newCacheFixture(t)
			if mode == "daemon" {
				startDaemon(t, fx)
			}
			for _, tc := range []struct {
				args []string
				want []string // identities
			}{
				{nil, []string{"001122334455", "Laptop1@example.com", "host1.example.com"}},
				{[]string{"--mac", "AA-BB-CC-DD-EE-01"}, []string{"Laptop1@example.com"}},
				{[]string{"--user", "HOST1.example.com"}, []string{"host1.example.com"}},
				{[]string{"--site", "HQ"}, []string{"001122334455"}},
				{[]string{"--nas", "sw1"}, []string{"Laptop1@example.com"}},
				{[]string{"--method", "eap-tls"}, []string{"Laptop1@example.com", "host1.example.com"}},

				{[]string{"--expiring-within", "3h"}, []string{"Laptop1@example.com", "host1.example.com"}},
				{[]string{"--expiring-within", "1m"}, []string{"host1.example.com"}},
				{[]string{"--site", "nowhere"}, nil},
			} {
				t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
					out, _, err := runCache(t, fx, "", append([]string{"list", "-o", "json"}, tc.args...)...)
					if err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
						if line == "" {
							continue
						}
						assertPublicSchema(t, line, "mxedge.cache.entry.v1", false)
						var d cacheEntryDoc
						if err := json.Unmarshal([]byte(line), &d); err != nil {
							t.Fatal(err)
						}
						got = append(got, d.Identity)
					}
					slices.Sort(got)
					slices.Sort(tc.want)
					if strings.Join(got, "|") != strings.Join(tc.want, "|") {
						t.Fatalf("got %q, want %q", got, tc.want)
					}
				})
			}
			// --limit counts matches: the first entry in key order is MAB, yet one EAP-TLS entry prints.
			out, _, err := runCache(t, fx, "", "list", "-o", "json", "--method", "eap-tls", "--limit", "1")
			if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"method":"eap-tls"`) {
				t.Fatalf("--limit 1 --method eap-tls: %q (%v)", out, err)
			}
			for _, bad := range [][]string{{"--mac", "nope"}, {"--method", "pap"}, {"--expiring-within", "-1h"}, {"-o", "csv"}} {
				_, _, err := runCache(t, fx, "", append([]string{"list"}, bad...)...)
				if !errors.Is(err, ErrUsage) {
					t.Errorf("%v: err = %v, want a usage error", bad, err)
				}
			}
		})
	}
}

// TestCacheSchemaGolden: the entry and stats documents, identical through the daemon and the file
// (but for stats' source).
func TestCacheSchemaGolden(t *testing.T) {
	for _, mode := range []string{"daemon", "direct"} {
		t.Run(mode, func(t *testing.T) {
			fx := newCacheFixture(t)
			if mode == "daemon" {
				startDaemon(t, fx)
			}
			for _, tc := range []struct {
				golden string
				args   []string
			}{
				{"cache_list_v1.json.golden", []string{"list", "-o", "json"}},
				{"cache_list_v1.yaml.golden", []string{"list", "-o", "yaml", "--limit", "2"}},
				{"cache_show_v1.json.golden", []string{"show", "-o", "json", "00:11:22:33:44:55"}},
			} {
				out, _, err := runCache(t, fx, "", tc.args...)
				if err != nil {
					t.Fatal(err)
				}
				cacheGolden(t, tc.golden, out)
			}
			out, _, err := runCache(t, fx, "", "stats", "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			assertPublicSchema(t, out, "mxedge.cache.stats.v1", false)
			if mode == "direct" { // the file's size depends on bbolt's page layout: a placeholder
				cacheGolden(t, "cache_stats_v1.json.golden", regexp.MustCompile(`"db_size_bytes": \d+`).ReplaceAllString(out, `"db_size_bytes": SIZE`))
			}
			var d cacheStatsDoc
			if err := json.Unmarshal([]byte(out), &d); err != nil || d.Entries != 3 || d.Source != map[string]string{"daemon": "daemon", "direct": "file"}[mode] {
				t.Fatalf("stats %+v (%v)", d, err)
			}
		})
	}
}
