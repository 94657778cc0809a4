package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/pki/pkitest"
)

// checkCase writes testdata/checkrun/NAME into dir, with @DIR@, @CERT@, @KEY@ and @CA@ replaced by
// the temporary directory and a test PKI's upstream client material.
func checkCase(t *testing.T, name, dir string, lab *pkitest.Lab) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "checkrun", name))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.NewReplacer("@DIR@", dir, "@CERT@", lab.ClientCert, "@KEY@", lab.ClientKey, "@CA@", lab.CAFile).Replace(string(src))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runBinary runs the mxedge binary with args, outside systemd, and returns its standard error
// and exit status. A process still running after 20 s is killed and fails the test: every
// configuration given to run here must be refused at start.
func runBinary(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mxedge %s still running after 20 s: %s", strings.Join(args, " "), stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mxedge %s: %v", strings.Join(args, " "), err)
	}
	return stderr.String(), cmd.ProcessState.ExitCode()
}

// verdict is main's error message: from the last "mxedge: " line on (run logs before it).
func verdict(stderr string) string {
	if i := strings.LastIndex(stderr, "\nmxedge: "); i >= 0 {
		return stderr[i+1:]
	}
	return stderr
}

// TestCheckAgreesWithRun runs the real binary's check and run on the same broken files: both must
// refuse each one with exit status 2 and the same message, naming the file, line and field.
func TestCheckAgreesWithRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mxedge")
	if out, err := exec.Command("go", "build", "-o", bin, "mxedge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	lab := pkitest.Must(t)
	tests := []struct {
		file string
		want []string // in check's message, in this order
	}{
		{"tab.yaml", []string{"tab.yaml:4: a tab character in the indentation (tab characters are not allowed for indentation"}},
		{"type-int.yaml", []string{"type-int.yaml:12: survivability.failback_probes: \"three\" is not a whole number (failback_probes must be a whole number)"}},
		{"type-bool.yaml", []string{"type-bool.yaml:12: survivability.enabled: \"maybe\" is not true or false"}},
		{"duration.yaml", []string{"duration.yaml:11: request_timeout: \"fast\" is not a duration"}},
		{"unknown-key.yaml", []string{"unknown-key.yaml:11: unknown key \"listen_port\""}},
		{"multi.yaml", []string{"multi.yaml:1: cache.ttl:", "multi.yaml:6: clients[0].vendor:", "multi.yaml:11: no_upstream:"}},
		{"control-too-long.yaml", []string{"control-too-long.yaml:2: control.socket: control: "}},
		{"missing-secret-file.yaml", []string{"missing-secret-file.yaml:6: clients[0].secret_file:"}},
		{"bad-listen.yaml", []string{"bad-listen.yaml:4: listen.auth[0]:"}},
		{"missing-cert.yaml", []string{"missing-cert.yaml:8: upstreams.tls"}},
		{"bad-metrics.yaml", []string{"bad-metrics.yaml:3: metrics.listen:"}},
		{"bad-dns.yaml", []string{"bad-dns.yaml:9: upstreams.dns: resolve: name server"}},
		{"duplicate-upstream.yaml", []string{"duplicate-upstream.yaml:11: upstreams.servers[1].name:"}},
		{"cache-under-file.yaml", []string{"cache-under-file.yaml:1: cache.path: ", "cache-under-file.yaml is not a directory"}},
		{"absent.yaml", []string{"absent.yaml: no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			if tt.file != "absent.yaml" {
				path = checkCase(t, tt.file, dir, lab)
			}
			checkErr, checkCode := runBinary(t, bin, "check", "-c", path)
			runErr, runCode := runBinary(t, bin, "run", "-c", path)
			if checkCode != 2 || runCode != 2 {
				t.Errorf("exit status: check %d, run %d; want 2 and 2\ncheck: %s\nrun: %s", checkCode, runCode, checkErr, runErr)
			}
			if verdict(checkErr) != verdict(runErr) {
				t.Errorf("check and run disagree:\ncheck: %s\nrun:   %s", verdict(checkErr), verdict(runErr))
			}
			rest := checkErr
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("check says %q; want %q (in this order: %q)", checkErr, w, tt.want)
				}
				rest = rest[i+len(w):]
			}
		})
	}
	// The same file without its fault passes check (exit 0), with the port 0 warnings printed.
	dir := t.TempDir()
	out, code := runBinary(t, bin, "check", "-c", checkCase(t, "base.yaml", dir, lab))
	if code != 0 || !strings.Contains(out, "warning: ") {
		t.Fatalf("base.yaml: exit %d: %s", code, out)
	}
	// --strict makes its warnings fatal.
	if out, code := runBinary(t, bin, "check", "--strict", "-c", filepath.Join(dir, "base.yaml")); code != 2 {
		t.Fatalf("base.yaml --strict: exit %d: %s", code, out)
	}
}
