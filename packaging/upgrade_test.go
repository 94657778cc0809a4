package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebUpgradeKeepsEditedConfig: the real binary packaged twice (1.0.0-1, then 1.1.0-1), installed
// into a dpkg root; the operator edits /etc/mxedge/mxedge.yaml; the upgrade runs without any
// --force-conf* option and with no terminal, so a conffile prompt would fail it. The edit survives,
// the upgraded binary runs, the unit's "not configured" condition still holds for a file that sets
// nothing live and passes once it sets a client, and the shipped file sets no key at all (every
// default stays in the binary, where an upgrade can change it).
func TestDebUpgradeKeepsEditedConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("dpkg --root needs root (the test environment runs as root)")
	}
	need(t, "dpkg", "dpkg-deb")
	bin := goBuild(t, "amd64")
	v1 := buildDeb(t, "amd64", bin, "1.0.0-1", t.TempDir())
	v2 := buildDeb(t, "amd64", bin, "1.1.0-1", t.TempDir())
	root := dpkgRoot(t)
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	}
	dpkg("--install", v1)
	conf := filepath.Join(root, "etc/mxedge/mxedge.yaml")
	shipped := readFile(t, conf)
	for i, line := range strings.Split(string(shipped), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("install/mxedge.yaml:%d sets %q: a copied default would never change on upgrade", i+1, l)
		}
	}

	edited := append(bytes.Clone(shipped), "\n# site 20: edited by the operator\nlog:\n  level: debug\n"...)
	if err := os.WriteFile(conf, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	dpkg("--install", v2)
	if got := readFile(t, conf); !bytes.Equal(got, edited) {
		t.Fatalf("the upgrade replaced the edited configuration:\n%s", got)
	}
	if s := run(t, nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Status} ${Version}", "mxedge"); s != "install ok installed 1.1.0-1" {
		t.Fatalf("after upgrade: %q", s)
	}
	if out := run(t, nil, filepath.Join(root, "usr/bin/mxedge"), "--version"); !strings.HasPrefix(out, "mxedge 1.0.0\n") {
		t.Errorf("the upgraded binary's --version: %q", out)
	}

	cond := append(unitCommand(t, root, "ExecCondition"), "--config", conf)
	out, err := exec.Command(cond[0], cond[1:]...).CombinedOutput()
	if code := exitCode(err); code != 78 || !strings.Contains(string(out), "not configured: run `mxedge register` or edit "+conf) {
		t.Errorf("after the upgrade, ExecCondition on an edited file that sets nothing live: exit %d, want 78\n%s", code, out)
	}
	secret := filepath.Join(root, "etc/mxedge/sw1.secret")
	if err := os.WriteFile(secret, []byte("k8Vq2mZt9Lw4Xr7Bn3Hc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configured := append(bytes.Clone(edited), ("clients:\n  - name: sw1\n    address: 10.20.0.2\n    secret_file: " + secret + "\n")...)
	if err := os.WriteFile(conf, configured, 0o640); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cond[0], cond[1:]...).CombinedOutput(); err != nil {
		t.Errorf("ExecCondition on a configured file: %v\n%s", err, out)
	}
}
