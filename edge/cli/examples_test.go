package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mxedge/pki/pkitest"
)

// TestExamplesCheck runs `mxedge check` on every examples/*/mxedge.yaml exactly as shipped but for
// two prefixes: /var/lib/mxedge/ and /etc/mxedge/ point into a temporary directory, where the
// certificate, key, CA and secret files the example names are created; an example that leaves the
// cache at its default (/var/lib/mxedge/cache.db, whose directory check requires) gets a cache.path
// in that directory too.
func TestExamplesCheck(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "mxedge.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples/*/mxedge.yaml (%v)", err)
	}
	p := pkitest.Must(t)
	secretFile := regexp.MustCompile(`secret_file:\s*(\S+)`)
	for _, path := range paths {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			state, etc := filepath.Join(dir, "var-lib-mxedge")+"/", filepath.Join(dir, "etc-mxedge")+"/"
			conf := strings.NewReplacer("/var/lib/mxedge/", state, "/etc/mxedge/", etc).Replace(string(b))
			if !regexp.MustCompile(`(?m)^cache:`).MatchString(conf) {
				conf += "\ncache:\n  path: " + state + "cache.db\n"
			}
			for src, dst := range map[string]string{p.ClientCert: "edge.crt", p.ClientKey: "edge.key", p.CAFile: "ca.pem"} {
				copyFile(t, src, filepath.Join(state, dst))
			}
			for _, m := range secretFile.FindAllStringSubmatch(conf, -1) {
				if err := os.MkdirAll(filepath.Dir(m[1]), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(m[1], []byte("k8Vq2mZt9Lw4Xr7Bn3Hc\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfgPath := filepath.Join(dir, "mxedge.yaml")
			if err := os.WriteFile(cfgPath, []byte(conf), 0o640); err != nil {
				t.Fatal(err)
			}
			out, err := execute(t, "check", "--config", cfgPath)
			if err != nil {
				t.Fatalf("mxedge check %s: %v\n%s", path, err, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
