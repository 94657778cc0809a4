package cli

import (
	"slices"
	"strings"
	"testing"

	"mxedge/edge/control"
)

// complete runs cobra's hidden __complete command, as the installed shell completions do, and
// returns the candidates (without the trailing directive line).
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := execute(t, append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	var c []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" || strings.HasPrefix(l, ":") || strings.HasPrefix(l, "Completion ended") {
			continue
		}
		name, _, _ := strings.Cut(l, "\t")
		c = append(c, name)
	}
	return c
}

func TestFlagCompletion(t *testing.T) {
	fx := newCacheFixture(t)
	startDaemon(t, fx)
	sock := startFakeDaemon(t, control.Options{Clients: fakeClients})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"events", "--socket", sock, "--nas", ""}, []string{"sw-core", "wlc-2", "radsec:ap-fleet"}},
		{[]string{"cache", "list", "--socket", sock, "--site", ""}, []string{"Branch 2", "HQ"}},
		{[]string{"cache", "list", "--socket", fx.sock, "--mac", "aa"}, []string{"aa:bb:cc:dd:ee:01"}},
		{[]string{"cache", "show", "--socket", fx.sock, ""}, []string{"00:11:22:33:44:55", "aa:bb:cc:dd:ee:01"}},
		{[]string{"status", "-o", ""}, []string{"text", "json", "yaml"}},
		{[]string{"test", "auth", "--acct", ""}, []string{"start", "interim", "stop"}},
		{[]string{"events", "--socket", sock + ".none", "--nas", ""}, nil}, // no daemon: nothing, not an error
	} {
		if got := complete(t, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
	}
}
