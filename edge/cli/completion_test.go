package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

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
	} {
		if got := complete(t, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestCompletionFromConfig: with no daemon, --nas and --site complete from the configuration file,
// even one with errors elsewhere (an unknown key here).
func TestCompletionFromConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "mxedge.yaml")
	if err := os.WriteFile(conf, []byte("clients:\n  - name: core-sw1\n    site: Branch 20\n  - name: access-aruba\n    site: Branch 20\n  - name: lab-sw\n    site: Lab\nnot_a_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := testOpsEnv()
	env.configPath = conf
	sock := filepath.Join(dir, "none.sock")
	cmd := &cobra.Command{}
	cmd.SetContext(context.Background())
	if got, _ := completeNAS(&sock, env)(cmd, nil, ""); !slices.Equal(got, []string{"core-sw1", "access-aruba", "lab-sw"}) {
		t.Errorf("--nas: %q", got)
	}
	if got, _ := completeSites(&sock, env)(cmd, nil, ""); !slices.Equal(got, []string{"Branch 20", "Lab"}) {
		t.Errorf("--site: %q", got)
	}
	env.configPath = filepath.Join(dir, "missing.yaml")
	if got, _ := completeNAS(&sock, env)(cmd, nil, ""); got != nil {
		t.Errorf("--nas without a file: %q", got)
	}
}
