package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxedge/edge/config"
	"mxedge/pki/pkitest"
)

// TestCheckJSONGolden pins the mxedge.check.v1 document (docs/operations.md) for a valid file with
// warnings, type, syntax and ordering errors, and the packaged "not configured" default.
func TestCheckJSONGolden(t *testing.T) {
	lab := pkitest.Must(t)
	tests := []struct {
		file, golden, format string
		strict               bool
		code                 int // the exit code main would give
	}{
		{"warnings.yaml", "check_warnings_json", "json", false, 0},
		{"warnings.yaml", "check_warnings_strict_json", "json", true, 2},
		{"type-int.yaml", "check_type_json", "json", false, 2},
		{"tab.yaml", "check_tab_json", "json", false, 2},
		{"multi.yaml", "check_multi_yaml", "yaml", false, 2},
		{"unconfigured.yaml", "check_unconfigured_json", "json", false, ExitNotConfigured},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			dir := t.TempDir()
			var path string
			if tt.file == "unconfigured.yaml" {
				src, err := os.ReadFile("../../install/mxedge.yaml")
				if err != nil {
					t.Fatal(err)
				}
				path = filepath.Join(dir, tt.file)
				if err := os.WriteFile(path, src, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				path = checkCase(t, tt.file, dir, lab)
			}
			args := []string{"-c", path, "-o", tt.format}
			if tt.strict {
				args = append(args, "--strict")
			}
			out, err := runOps(t, newCheckCmd(), args...)
			if got := exitCodeOf(err); got != tt.code {
				t.Errorf("exit code %d (%v), want %d", got, err, tt.code)
			}
			out = strings.ReplaceAll(out, dir, "DIR")
			out = strings.NewReplacer(lab.ClientCert, "CERT", lab.ClientKey, "KEY", lab.CAFile, "CA").Replace(out)
			opsGolden(t, tt.golden+".golden", out)
		})
	}
}

// exitCodeOf maps err as main does.
func exitCodeOf(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, config.ErrInvalid), errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

// TestCheckBaseDir: Ansible's validate: runs check on a temporary copy of the file; --base-dir
// resolves its relative paths where the real file lives.
func TestCheckBaseDir(t *testing.T) {
	lab := pkitest.Must(t)
	etc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(etc, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "secrets", "nas"), []byte("a-secret-nobody-guesses-42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := checkCase(t, "missing-secret-file.yaml", etc, lab)
	if _, err := runOps(t, newCheckCmd(), "-c", path); err != nil {
		t.Fatalf("in place: %v", err)
	}
	tmp := t.TempDir()
	doc, _ := os.ReadFile(path)
	copyPath := filepath.Join(tmp, "ansible-tmp-123.yaml")
	if err := os.WriteFile(copyPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runOps(t, newCheckCmd(), "-c", copyPath)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "clients[0].secret_file") {
		t.Fatalf("the copy without --base-dir: %v", err)
	}
	out, err := runOps(t, newCheckCmd(), "--base-dir", etc, "-c", copyPath)
	if err != nil || !strings.Contains(out, ": OK (1 NAS clients") {
		t.Fatalf("the copy with --base-dir: %v %s", err, out)
	}
	// A relative --config resolves like an absolute one: the control socket stays absolute.
	t.Chdir(etc)
	if _, err := runOps(t, newCheckCmd(), "-c", filepath.Base(path)); err != nil {
		t.Fatalf("relative --config: %v", err)
	}
	if _, err := runOps(t, newCheckCmd(), "-c", path, "-o", "xml"); !errors.Is(err, ErrUsage) {
		t.Fatalf("-o xml: %v", err)
	}
}

// TestCheckManPageExitCodes: the man page, generated from --help, documents the exit codes check
// really returns (TestCheckJSONGolden, TestCheckAgreesWithRun).
func TestCheckManPageExitCodes(t *testing.T) {
	dir := t.TempDir()
	if out, err := execute(t, "gen-man", dir); err != nil {
		t.Fatalf("gen-man: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "mxedge-check.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0   the configuration is valid", "2   errors (or warnings with --strict)", "78  not configured", `\fB--base-dir\fP`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("mxedge-check.1 lacks %q", want)
		}
	}
}
