package cli

import (
	"context"
	"os"
	"os/exec"
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

// bashCompletionLib is Debian's bash-completion library, which interactive bash loads and cobra's
// script calls (_get_comp_words_by_ref).
const bashCompletionLib = "/usr/share/bash-completion/bash_completion"

// TestBashCompletesFlagValues: the script the .deb installs (`mxedge completion bash`), sourced by
// a real bash, completes flag values by calling the binary: -o formats, and a running daemon's NAS
// names.
func TestBashCompletesFlagValues(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	if _, err := os.Stat(bashCompletionLib); err != nil {
		t.Fatalf("bash-completion (Makefile PEER_PKGS): %v", err)
	}
	bin := buildMxedge(t)
	sock := startFakeDaemon(t, control.Options{Clients: fakeClients})
	script := filepath.Join(t.TempDir(), "mxedge.bash")
	out, err := exec.Command(bin, "completion", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, out, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words string // the command line; the last word is being completed
		want  string
	}{
		{`mxedge status -o ""`, "json text yaml"},
		{`mxedge events --socket ` + sock + ` --nas ""`, "radsec:ap-fleet sw-core wlc-2"},
		{`mxedge test auth --acct st`, "start stop"},
	} {
		prog := `PATH=` + filepath.Dir(bin) + `:$PATH; source ` + bashCompletionLib + `; source ` + script + `
compopt() { :; } # a builtin that works only inside a real Tab press
COMP_WORDS=(` + tc.words + `); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
__start_mxedge mxedge; printf '%s\n' "${COMPREPLY[@]}" | sed 's/[[:space:]]*(.*//' | sort | tr '\n' ' '`
		got, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.words, err, got)
		}
		if strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("%s: %q, want %q", tc.words, strings.TrimSpace(string(got)), tc.want)
		}
	}
}
