package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// fakeBinary stands in for the mxedge executable: fixed bytes keep the golden hash stable.
func fakeBinary(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mxedge")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho mxedge test binary\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// tree renders every entry under root as "path type mode [content]", sorted: the golden format.
// Embedded assets are named rather than hashed so the golden survives edits to the default config.
func tree(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			lines = append(lines, fmt.Sprintf("%s d %04o", rel, info.Mode().Perm()))
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			content := assetName(b)
			if content != "" {
				content = "embed:" + content
			} else {
				sum := sha256.Sum256(b)
				content = "sha256:" + hex.EncodeToString(sum[:])
			}
			lines = append(lines, fmt.Sprintf("%s f %04o %s", rel, info.Mode().Perm(), content))
		default:
			lines = append(lines, fmt.Sprintf("%s ? %s", rel, info.Mode().Type()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./install -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./install -update regenerates it)\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

func TestInstallGoldenTree(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	if err := Install(context.Background(), Options{Root: root, Binary: fakeBinary(t), Out: &out}); err != nil {
		t.Fatal(err)
	}
	golden(t, "install.golden", tree(t, root))
	golden(t, "install-output.golden", strings.ReplaceAll(out.String(), root, "ROOT"))
}

func TestInstallIdempotent(t *testing.T) {
	root := t.TempDir()
	bin := fakeBinary(t)
	ctx := context.Background()
	if err := Install(ctx, Options{Root: root, Binary: bin}); err != nil {
		t.Fatal(err)
	}
	first := tree(t, root)
	var out bytes.Buffer
	if err := Install(ctx, Options{Root: root, Binary: bin, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if second := tree(t, root); second != first {
		t.Errorf("second install changed the tree:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	want := []string{
		"unchanged /usr/bin/mxedge",
		"unchanged " + UnitPath,
		"unchanged " + SysusersPath,
		"unchanged " + TmpfilesPath,
		"kept existing " + ConfigPath,
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w+"\n") {
			t.Errorf("second install output lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "installed ") {
		t.Errorf("second install reinstalled something:\n%s", out.String())
	}
}

// The operator's configuration survives a reinstall; a changed binary or a tampered unit is replaced.
func TestInstallKeepsConfigReplacesFiles(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	if err := Install(ctx, Options{Root: root, Binary: fakeBinary(t)}); err != nil {
		t.Fatal(err)
	}
	mine := []byte("# mine\n")
	if err := os.WriteFile(filepath.Join(root, ConfigPath), mine, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, UnitPath), []byte("[Service]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newBin := filepath.Join(t.TempDir(), "mxedge2")
	if err := os.WriteFile(newBin, []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Install(ctx, Options{Root: root, Binary: newBin, Out: &out}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want []byte
		mode fs.FileMode
	}{
		{ConfigPath, mine, 0o640},
		{UnitPath, Unit, 0o644},
		{BinaryPath, []byte("v2"), 0o755},
	} {
		b, err := os.ReadFile(filepath.Join(root, c.path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, c.want) {
			t.Errorf("%s = %q, want %q", c.path, b, c.want)
		}
		st, _ := os.Stat(filepath.Join(root, c.path))
		if st.Mode().Perm() != c.mode {
			t.Errorf("%s mode %04o, want %04o", c.path, st.Mode().Perm(), c.mode)
		}
	}
	for _, w := range []string{"kept existing " + ConfigPath, "installed " + UnitPath, "installed " + BinaryPath} {
		if !strings.Contains(out.String(), w+"\n") {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestUninstall(t *testing.T) {
	tests := []struct {
		name  string
		purge bool
		want  string // golden tree after uninstall
	}{
		{"keep", false, "uninstall.golden"},
		{"purge", true, "uninstall-purge.golden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ctx := context.Background()
			if err := Install(ctx, Options{Root: root, Binary: fakeBinary(t)}); err != nil {
				t.Fatal(err)
			}
			// Data the service made: it must survive a plain uninstall.
			if err := os.WriteFile(filepath.Join(root, StateDir, "cache.db"), []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Uninstall(ctx, Options{Root: root, Purge: tc.purge, Out: &out}); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.want, tree(t, root))
			_, err := os.Stat(filepath.Join(root, StateDir, "cache.db"))
			if tc.purge != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("purge=%v but state file stat: %v", tc.purge, err)
			}
			// Again: nothing left to do, and no error.
			out.Reset()
			before := tree(t, root)
			if err := Uninstall(ctx, Options{Root: root, Purge: tc.purge, Out: &out}); err != nil {
				t.Fatal(err)
			}
			if after := tree(t, root); after != before {
				t.Errorf("second uninstall changed the tree")
			}
			if strings.Contains(out.String(), "removed ") {
				t.Errorf("second uninstall removed something:\n%s", out.String())
			}
		})
	}
}

// fakeHost records the live-system commands instead of running them.
type fakeHost struct {
	cmds []string
	has  map[string]bool
	user bool // the mxedge user exists
}

func (f *fakeHost) host(systemd bool) *Host {
	return &Host{
		Systemd:    systemd,
		LookPath:   func(name string) bool { return f.has[name] },
		UserExists: func(string) bool { return f.user },
		Run: func(_ context.Context, name string, args ...string) error {
			f.cmds = append(f.cmds, strings.Join(append([]string{name}, args...), " "))
			return nil
		},
	}
}

func TestInstallHostCommands(t *testing.T) {
	all := map[string]bool{"systemd-sysusers": true, "systemd-tmpfiles": true, "useradd": true}
	tests := []struct {
		name     string
		systemd  bool
		noEnable bool
		user     bool
		has      map[string]bool
		want     []string
		say      string // a line the output must contain
	}{
		{"systemd", true, false, false, all, []string{
			"systemd-sysusers " + SysusersPath,
			"systemd-tmpfiles --create " + TmpfilesPath,
			"systemctl daemon-reload",
			"systemctl enable mxedge.service",
			"systemctl restart mxedge.service",
		}, "note: /etc/mxedge/mxedge.yaml is the shipped default: unless the edge is registered, mxedge.service is not configured and its start is skipped; edit the file or run `mxedge register`, then `systemctl restart mxedge`"},
		{"reinstall", true, false, true, all, []string{
			"systemd-tmpfiles --create " + TmpfilesPath,
			"systemctl daemon-reload",
			"systemctl enable mxedge.service",
			"systemctl restart mxedge.service",
		}, "kept existing user mxedge"},
		{"no-enable", true, true, false, all, []string{
			"systemd-sysusers " + SysusersPath,
			"systemd-tmpfiles --create " + TmpfilesPath,
			"systemctl daemon-reload",
		}, "left mxedge.service disabled (--no-enable)"},
		{"container without systemd", false, false, false, map[string]bool{"useradd": true}, []string{
			"useradd --system --user-group --home-dir /var/lib/mxedge --no-create-home --shell /usr/sbin/nologin mxedge",
			"chown root:mxedge /etc/mxedge /etc/mxedge/mxedge.yaml",
			"chown mxedge:mxedge /var/lib/mxedge",
		}, "skipped enabling mxedge.service: systemd is not running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeHost{has: tc.has, user: tc.user}
			var out bytes.Buffer
			err := Install(context.Background(), Options{
				Root: t.TempDir(), Binary: fakeBinary(t), NoEnable: tc.noEnable, Host: f.host(tc.systemd), Out: &out,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.cmds, tc.want) {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(f.cmds, "\n"), strings.Join(tc.want, "\n"))
			}
			if !strings.Contains(out.String(), tc.say+"\n") {
				t.Errorf("output lacks %q:\n%s", tc.say, out.String())
			}
		})
	}
}

func TestUninstallHostCommands(t *testing.T) {
	f := &fakeHost{user: true}
	root := t.TempDir()
	if err := Install(context.Background(), Options{Root: root, Binary: fakeBinary(t)}); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(context.Background(), Options{Root: root, Purge: true, Host: f.host(true)}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"systemctl disable --now mxedge.service",
		"systemctl daemon-reload",
		"userdel mxedge",
	}
	if !slices.Equal(f.cmds, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(f.cmds, "\n"), strings.Join(want, "\n"))
	}
}

func TestInstallErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"relative root", Options{Root: "rel", Binary: "x"}, ErrRoot},
		{"no binary", Options{Root: t.TempDir()}, ErrNoBinary},
		{"missing binary", Options{Root: t.TempDir(), Binary: "/nonexistent/mxedge"}, fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Install(context.Background(), tc.opts); !errors.Is(err, tc.want) {
				t.Errorf("Install: %v, want %v", err, tc.want)
			}
		})
	}
}
