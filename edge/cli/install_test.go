package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runInstallCmd runs `mxedge ARGS...` in-process with install and uninstall attached (until root.go
// lists them, and in case it does) and returns stdout and the error main would map to an exit code.
func runInstallCmd(t testing.TB, args ...string) (string, error) {
	t.Helper()
	root := New(BuildInfo{})
	for name, c := range map[string]func() *cobra.Command{"install": func() *cobra.Command { return newInstallCmd(BuildInfo{}) }, "uninstall": newUninstallCmd} {
		if found, _, err := root.Find([]string{name}); err != nil || found.Name() != name {
			root.AddCommand(c())
		}
	}
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func TestInstallUninstallCmd(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(t.TempDir(), "mxedge")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		want []string // lines the output must contain
		gone []string // paths that must not exist afterwards
		kept []string // paths that must exist afterwards
	}{
		{
			args: []string{"install", "--root", root, "--binary", bin, "--no-enable"},
			want: []string{"installed /usr/bin/mxedge", "installed /usr/lib/systemd/system/mxedge.service",
				"installed /etc/mxedge/mxedge.yaml", "skipped user, tmpfiles and systemd: " + root + " is not the running system"},
			kept: []string{"usr/bin/mxedge", "etc/mxedge/mxedge.yaml", "usr/lib/sysusers.d/mxedge.conf", "usr/lib/tmpfiles.d/mxedge.conf"},
		},
		{
			args: []string{"install", "--root", root, "--binary", bin},
			want: []string{"unchanged /usr/bin/mxedge", "kept existing /etc/mxedge/mxedge.yaml"},
		},
		{
			args: []string{"uninstall", "--root", root},
			want: []string{"removed /usr/bin/mxedge", "kept /etc/mxedge (--purge removes it)"},
			gone: []string{"usr/bin/mxedge", "usr/lib/systemd/system/mxedge.service"},
			kept: []string{"etc/mxedge/mxedge.yaml", "var/lib/mxedge"},
		},
		{
			args: []string{"uninstall", "--root", root, "--purge"},
			want: []string{"already absent /usr/bin/mxedge", "removed /etc/mxedge", "removed /var/lib/mxedge"},
			gone: []string{"etc/mxedge", "var/lib/mxedge"},
		},
	}
	for _, s := range steps {
		out, err := runInstallCmd(t, s.args...)
		if err != nil {
			t.Fatalf("mxedge %s: %v\n%s", strings.Join(s.args, " "), err, out)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("mxedge %s: output lacks %q:\n%s", strings.Join(s.args, " "), w, out)
			}
		}
		for _, p := range s.gone {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				t.Errorf("mxedge %s: %s still exists", strings.Join(s.args, " "), p)
			}
		}
		for _, p := range s.kept {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("mxedge %s: %v", strings.Join(s.args, " "), err)
			}
		}
	}
}

// Without --binary, install copies the running executable.
func TestInstallCmdDefaultBinary(t *testing.T) {
	root := t.TempDir()
	if _, err := runInstallCmd(t, "install", "--root", root); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(exe)
	got, err := os.ReadFile(filepath.Join(root, "usr/bin/mxedge"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("installed binary differs from the running executable")
	}
}

func TestInstallCmdUsage(t *testing.T) {
	if _, err := runInstallCmd(t, "install", "--root", t.TempDir(), "extra"); err == nil {
		t.Error("install accepted a positional argument")
	}
	if _, err := runInstallCmd(t, "install", "--root", "relative/dir", "--binary", "/bin/sh"); err == nil {
		t.Error("install accepted a relative --root")
	}
}
