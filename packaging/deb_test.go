package packaging

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// epoch is the SOURCE_DATE_EPOCH every test build uses.
const epoch = "1700000000"

// version is the package version of the shared builds: as long as `make deb` makes them from a
// dirty tree past a tag, so lintian sees realistic line lengths.
const version = "1.2.3+45.gabcdef0.dirty-1"

// need fails the test when a tool the packaging depends on is missing: `make test` installs them
// (PEER_PKGS), so a missing one is a broken environment, never a skip.
func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the Debian packages in the Makefile's PEER_PKGS (make test-deps): %v", tool, err)
		}
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// goBuild builds mxedge for linux/goarch the way `make build` and `make deb` do, once per test
// binary run: builds dominate this package's run time on a shared machine.
func goBuild(t testing.TB, goarch string) string {
	t.Helper()
	b := builds[goarch]
	if b == nil {
		t.Fatalf("no build for %s", goarch)
	}
	b.once.Do(func() {
		b.path = filepath.Join(buildDir, goarch, "mxedge")
		cmd := exec.Command("go", "build", "-C", "..", "-trimpath", "-ldflags", "-s -w -X main.version=1.0.0", "-o", b.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", goarch, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

type build struct {
	once sync.Once
	path string
	err  error
	// The package of this build (version), built once by debFor.
	debOnce sync.Once
	deb     string
}

// debFor returns the package (version) of the real binary for goarch, built once per test binary run
// (xz over a 10 MB binary is the other slow step).
func debFor(t testing.TB, goarch string) string {
	t.Helper()
	bin := goBuild(t, goarch)
	b := builds[goarch]
	b.debOnce.Do(func() {
		dir := filepath.Join(buildDir, goarch, "deb")
		cmd := exec.Command("sh", "build-deb.sh", goarch, bin, version, dir)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+epoch, "DOCGEN="+docgen(t))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("build-deb.sh: %v\n%s", err, out)
			return
		}
		b.deb = filepath.Join(dir, "mxedge_"+version+"_"+goarch+".deb")
	})
	if b.deb == "" {
		t.Fatalf("no %s package (see the first failure)", goarch)
	}
	return b.deb
}

// docgen is the binary build-deb.sh generates man pages and completions with (DOCGEN): the real one
// for this machine's architecture, also for arm64 packages and for stand-in binaries, as `make deb`
// uses bin/mxedge.
func docgen(t testing.TB) string {
	t.Helper()
	return goBuild(t, runtime.GOARCH)
}

// Test-binary state: the shared builds and the directory they live in (removed by TestMain).
var (
	buildDir string
	builds   = map[string]*build{"amd64": {}, "arm64": {}}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxedge-packaging")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeBinary is a stand-in for packages whose binary is never run or inspected.
func fakeBinary(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mxedge")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildDeb runs build-deb.sh and returns the package path. tmp is the TMPDIR the script stages in:
// the bytes must not depend on it.
// shell, if given, runs first in the same shell (umask 077;).
func buildDeb(t testing.TB, arch, bin, version, tmp string, shell ...string) string {
	t.Helper()
	out := t.TempDir()
	script := strings.Join(shell, " ") + ` exec sh build-deb.sh "$@"`
	deb := strings.TrimSpace(run(t, []string{"SOURCE_DATE_EPOCH=" + epoch, "TMPDIR=" + tmp, "DOCGEN=" + docgen(t)},
		"sh", "-c", script, "sh", arch, bin, version, out))
	if want := filepath.Join(out, fmt.Sprintf("mxedge_%s_%s.deb", version, arch)); deb != want {
		t.Fatalf("build-deb.sh printed %q, want %q", deb, want)
	}
	return deb
}

// otherFS returns a temporary directory on tmpfs (/dev/shm) when there is one, so a staging tree
// there lists its entries in another order than on the disk t.TempDir() is on.
func otherFS(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "mxedge-deb")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func sha(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestDebReproducible: two builds with the same SOURCE_DATE_EPOCH are the same bytes, for both
// architectures, whatever the staging directory; and the binary inside is the right architecture.
func TestDebReproducible(t *testing.T) {
	need(t, "dpkg-deb", "file", "xz")
	for _, tc := range []struct{ arch, file string }{
		{"amd64", "x86-64"},
		{"arm64", "ARM aarch64"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			t.Parallel()
			a := debFor(t, tc.arch)
			// Again, staged on another file system (readdir order differs) under a hostile umask.
			b := buildDeb(t, tc.arch, goBuild(t, tc.arch), version, otherFS(t), "umask 077;")
			if sha(t, a) != sha(t, b) {
				t.Fatalf("two builds of %s differ: %x vs %x", tc.arch, sha(t, a), sha(t, b))
			}
			t.Logf("%s: sha256 %x", filepath.Base(a), sha(t, a))
			x := t.TempDir()
			run(t, nil, "dpkg-deb", "-x", a, x)
			if f := run(t, nil, "file", filepath.Join(x, "usr/bin/mxedge")); !strings.Contains(f, tc.file) || !strings.Contains(f, "statically linked") {
				t.Errorf("packaged binary: %s, want a static %s executable", f, tc.file)
			}
			if info := run(t, nil, "dpkg-deb", "-f", a, "Architecture"); strings.TrimSpace(info) != tc.arch {
				t.Errorf("Architecture: %q, want %q", info, tc.arch)
			}
		})
	}
}

// TestDebContents lists the package: paths, modes, owners, the conffile and the mtimes.
func TestDebContents(t *testing.T) {
	need(t, "dpkg-deb")
	deb := debFor(t, "amd64")
	// One man page per command, as the binary's own gen-man writes them; checked apart from the rest.
	pages := t.TempDir()
	run(t, []string{"SOURCE_DATE_EPOCH=" + epoch}, docgen(t), "gen-man", pages)
	entries, err := os.ReadDir(pages)
	if err != nil || len(entries) < 10 {
		t.Fatalf("gen-man wrote %d pages: %v", len(entries), err)
	}
	var wantPages, gotPages []string
	for _, e := range entries {
		wantPages = append(wantPages, "-rw-r--r-- root/root ./usr/share/man/man1/"+e.Name()+".gz")
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		// perms owner size date time path
		entry := f[0] + " " + f[1] + " " + f[5]
		if strings.HasPrefix(f[5], "./usr/share/man/man1/") && strings.HasSuffix(f[5], ".1.gz") {
			gotPages = append(gotPages, entry)
			continue
		}
		got = append(got, entry)
	}
	if !slices.Equal(gotPages, wantPages) || !slices.Contains(gotPages, "-rw-r--r-- root/root ./usr/share/man/man1/mxedge-run.1.gz") {
		t.Errorf("man pages:\n%s\nwant:\n%s", strings.Join(gotPages, "\n"), strings.Join(wantPages, "\n"))
	}
	want := []string{
		"drwxr-xr-x root/root ./",
		"drwxr-xr-x root/root ./etc/",
		"drwxr-x--- root/root ./etc/mxedge/",
		"-rw-r----- root/root ./etc/mxedge/mxedge.yaml",
		"drwxr-xr-x root/root ./usr/",
		"drwxr-xr-x root/root ./usr/bin/",
		"-rwxr-xr-x root/root ./usr/bin/mxedge",
		"drwxr-xr-x root/root ./usr/lib/",
		"drwxr-xr-x root/root ./usr/lib/systemd/",
		"drwxr-xr-x root/root ./usr/lib/systemd/system/",
		"-rw-r--r-- root/root ./usr/lib/systemd/system/mxedge.service",
		"drwxr-xr-x root/root ./usr/lib/sysusers.d/",
		"-rw-r--r-- root/root ./usr/lib/sysusers.d/mxedge.conf",
		"drwxr-xr-x root/root ./usr/lib/tmpfiles.d/",
		"-rw-r--r-- root/root ./usr/lib/tmpfiles.d/mxedge.conf",
		"drwxr-xr-x root/root ./usr/share/",
		"drwxr-xr-x root/root ./usr/share/bash-completion/",
		"drwxr-xr-x root/root ./usr/share/bash-completion/completions/",
		"-rw-r--r-- root/root ./usr/share/bash-completion/completions/mxedge",
		"drwxr-xr-x root/root ./usr/share/doc/",
		"drwxr-xr-x root/root ./usr/share/doc/mxedge/",
		"-rw-r--r-- root/root ./usr/share/doc/mxedge/changelog.Debian.gz",
		"-rw-r--r-- root/root ./usr/share/doc/mxedge/configuration.md",
		"-rw-r--r-- root/root ./usr/share/doc/mxedge/copyright",
		"-rw-r--r-- root/root ./usr/share/doc/mxedge/install.md",
		"drwxr-xr-x root/root ./usr/share/fish/",
		"drwxr-xr-x root/root ./usr/share/fish/vendor_completions.d/",
		"-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/mxedge.fish",
		"drwxr-xr-x root/root ./usr/share/lintian/",
		"drwxr-xr-x root/root ./usr/share/lintian/overrides/",
		"-rw-r--r-- root/root ./usr/share/lintian/overrides/mxedge",
		"drwxr-xr-x root/root ./usr/share/man/",
		"drwxr-xr-x root/root ./usr/share/man/man1/",
		"drwxr-xr-x root/root ./usr/share/zsh/",
		"drwxr-xr-x root/root ./usr/share/zsh/vendor-completions/",
		"-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_mxedge",
	}
	if !slices.Equal(got, want) {
		t.Errorf("contents:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := run(t, nil, "dpkg-deb", "-I", deb, "conffiles"); c != "/etc/mxedge/mxedge.yaml\n" {
		t.Errorf("conffiles = %q", c)
	}
	// The unit and snippets are install/'s bytes: one source for `mxedge install` and the package.
	x := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", deb, x)
	for src, dst := range map[string]string{
		"../install/mxedge.service":  "usr/lib/systemd/system/mxedge.service",
		"../install/mxedge.sysusers": "usr/lib/sysusers.d/mxedge.conf",
		"../install/mxedge.tmpfiles": "usr/lib/tmpfiles.d/mxedge.conf",
		"../install/mxedge.yaml":     "etc/mxedge/mxedge.yaml",
	} {
		if sha(t, src) != sha(t, filepath.Join(x, dst)) {
			t.Errorf("%s differs from %s", dst, src)
		}
	}
	// Completions are the binary's own, for each shell; the man page of run documents its flags.
	for shell, dst := range map[string]string{
		"bash": "usr/share/bash-completion/completions/mxedge",
		"zsh":  "usr/share/zsh/vendor-completions/_mxedge",
		"fish": "usr/share/fish/vendor_completions.d/mxedge.fish",
	} {
		if want := run(t, nil, docgen(t), "completion", shell); string(readFile(t, filepath.Join(x, dst))) != want {
			t.Errorf("%s is not `mxedge completion %s`", dst, shell)
		}
	}
	if page := run(t, nil, "sh", "-c", `gzip -dc "$1"`, "sh", filepath.Join(x, "usr/share/man/man1/mxedge-run.1.gz")); !strings.Contains(page, `\fB--free-ports\fP`) {
		t.Errorf("mxedge-run(1) does not document --free-ports:\n%s", page)
	}
	if m := strings.TrimSpace(run(t, nil, "dpkg-deb", "-f", deb, "Maintainer")); m != "mxedge maintainers <maintainers@mxedge.invalid>" {
		t.Errorf("Maintainer: %q", m)
	}
}

// TestLintian: no tag beyond the overrides packaging/lintian-overrides ships (each explained in
// docs/install.md), and every override is still needed.
func TestLintian(t *testing.T) {
	need(t, "lintian")
	deb := debFor(t, "amd64")
	cmd := exec.Command("lintian", "--pedantic", "--info", "-E", "--show-overrides", "--tag-display-limit", "0", deb)
	out, err := cmd.CombinedOutput()
	// With --show-overrides lintian exits 2 for an overridden error (statically-linked-binary);
	// what counts is that every tag printed is an override.
	if code := cmd.ProcessState.ExitCode(); err != nil && code != 2 {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	var overridden []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "N:"), strings.Contains(line, "running with root privileges"):
		case strings.HasPrefix(line, "O: "):
			overridden = append(overridden, strings.TrimPrefix(line, "O: "))
		default:
			t.Errorf("lintian: %s", line)
		}
	}
	ov, err := os.ReadFile("lintian-overrides")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(ov), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	slices.Sort(overridden)
	slices.Sort(want)
	if !slices.Equal(overridden, want) {
		t.Errorf("lintian overrides used:\n%s\nlintian-overrides lists:\n%s", strings.Join(overridden, "\n"), strings.Join(want, "\n"))
	}
}

// dpkgRoot makes a throwaway root dpkg can install into: an initialised admin directory and the
// account databases every system has.
func dpkgRoot(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status":    "",
		"var/lib/dpkg/available": "",
		"etc/passwd":             "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":              "root:x:0:\n",
		"etc/shadow":             "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":            "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// pathWithout returns a PATH directory holding the host's commands except those starting with one
// of the prefixes: a system without systemd's tools, for the maintainer scripts' fallbacks.
func pathWithout(t testing.TB, prefixes ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, src := range []string{"/usr/local/bin", "/usr/sbin", "/usr/bin"} {
		entries, err := os.ReadDir(src)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e.Name(), p) }) {
				continue
			}
			if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// account returns the uid or gid of mxedge in the root's passwd or group file, or -1.
func account(t testing.TB, root, file string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[0] == "mxedge" {
			id, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	return -1
}

func owner(t testing.TB, path string) (uid, gid int, mode fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid), st.Mode().Perm()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestDebInstallUpgradePurge installs, upgrades (keeping a modified configuration), removes and
// purges the package in a throwaway root with dpkg --root and chrootless maintainer scripts
// (DPKG_ROOT), with systemd's tools and without them (useradd and chown fallbacks). No systemd runs
// here, so the scripts must not try to start anything; the host must stay untouched.
func TestDebInstallUpgradePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("dpkg --root needs root (the test environment runs as root)")
	}
	need(t, "dpkg", "dpkg-deb", "useradd", "userdel", "systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper")
	// The binary is never run here: stand-ins keep the test fast and make the upgrade visible.
	v1 := buildDeb(t, "amd64", fakeBinary(t, "#!/bin/sh\necho 1.0.0\n"), "1.0.0-1", t.TempDir())
	v2bin := fakeBinary(t, "#!/bin/sh\necho 2.0.0\n")
	v2 := buildDeb(t, "amd64", v2bin, "2.0.0-1", t.TempDir())
	hostPasswd := sha(t, "/etc/passwd")
	const hostWants = "/etc/systemd/system/multi-user.target.wants/mxedge.service"
	hostEnabled := exists(hostWants)

	tests := []struct {
		name    string
		path    string // PATH for dpkg and the scripts; "" keeps the host's
		enabled bool   // deb-systemd-helper available: the unit is enabled in the root
	}{
		{"systemd tools", "", true},
		{"no systemd tools", pathWithout(t, "systemd-", "systemctl", "deb-systemd-"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := dpkgRoot(t)
			var env []string
			if tc.path != "" {
				env = append(env, "PATH="+tc.path)
			}
			dpkg := func(args ...string) string {
				t.Helper()
				return run(t, env, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless",
					"--force-confdef", "--force-confold"}, args...)...)
			}
			conf := filepath.Join(root, "etc/mxedge/mxedge.yaml")
			wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/mxedge.service")

			// Install.
			dpkg("--install", v1)
			uid, gid := account(t, root, "passwd"), account(t, root, "group")
			if uid < 0 || gid < 0 {
				t.Fatalf("postinst created no mxedge user/group in the root (uid %d, gid %d)", uid, gid)
			}
			for _, c := range []struct {
				path     string
				uid, gid int
				mode     fs.FileMode
			}{
				{"etc/mxedge", 0, gid, 0o750},
				{"etc/mxedge/mxedge.yaml", 0, gid, 0o640},
				{"var/lib/mxedge", uid, gid, 0o750},
				{"usr/bin/mxedge", 0, 0, 0o755},
			} {
				u, g, m := owner(t, filepath.Join(root, c.path))
				if u != c.uid || g != c.gid || m != c.mode {
					t.Errorf("%s: %d:%d %04o, want %d:%d %04o", c.path, u, g, m, c.uid, c.gid, c.mode)
				}
			}
			if exists(wants) != tc.enabled {
				t.Errorf("enabled symlink %s exists=%v, want %v", wants, exists(wants), tc.enabled)
			}
			if s := run(t, nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Status} ${Version}", "mxedge"); s != "install ok installed 1.0.0-1" {
				t.Errorf("after install: %q", s)
			}

			// The operator edits the configuration and the service writes state; upgrade keeps both.
			edited := append(readFile(t, conf), "# operator edit\n"...)
			if err := os.WriteFile(conf, edited, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "var/lib/mxedge/cache.db"), []byte("state"), 0o600); err != nil {
				t.Fatal(err)
			}
			dpkg("--install", v2)
			if !bytes.Equal(readFile(t, conf), edited) {
				t.Error("upgrade replaced the modified configuration")
			}
			if _, g, m := owner(t, conf); g != gid || m != 0o640 {
				t.Errorf("after upgrade the configuration is group %d mode %04o, want %d 0640", g, m, gid)
			}
			if sha(t, filepath.Join(root, "usr/bin/mxedge")) != sha(t, v2bin) {
				t.Error("upgrade did not install the new binary")
			}
			if u2 := account(t, root, "passwd"); u2 != uid {
				t.Errorf("upgrade changed the mxedge uid %d -> %d", uid, u2)
			}
			if s := run(t, nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Status} ${Version}", "mxedge"); s != "install ok installed 2.0.0-1" {
				t.Errorf("after upgrade: %q", s)
			}

			// Remove keeps configuration, state and user.
			dpkg("--remove", "mxedge")
			for _, p := range []string{"usr/bin/mxedge", "usr/lib/systemd/system/mxedge.service"} {
				if exists(filepath.Join(root, p)) {
					t.Errorf("remove left %s", p)
				}
			}
			for _, p := range []string{"etc/mxedge/mxedge.yaml", "var/lib/mxedge/cache.db"} {
				if !exists(filepath.Join(root, p)) {
					t.Errorf("remove deleted %s", p)
				}
			}
			if account(t, root, "passwd") < 0 {
				t.Error("remove deleted the mxedge user")
			}

			// Purge removes everything.
			dpkg("--purge", "mxedge")
			for _, p := range []string{"etc/mxedge", "var/lib/mxedge", "usr/bin/mxedge", "etc/systemd/system/multi-user.target.wants/mxedge.service",
				"etc/systemd/system/mxedge.service", "var/lib/systemd/deb-systemd-helper-enabled/mxedge.service.dsh-also"} {
				if exists(filepath.Join(root, p)) {
					t.Errorf("purge left %s", p)
				}
			}
			if account(t, root, "passwd") >= 0 || account(t, root, "group") >= 0 {
				t.Error("purge left the mxedge user or group")
			}
			// A purged package is forgotten: dpkg-query knows nothing of it (exit 1).
			if out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "mxedge").CombinedOutput(); err == nil {
				t.Errorf("after purge dpkg still knows mxedge: %s", out)
			}
		})
	}
	if sha(t, "/etc/passwd") != hostPasswd {
		t.Error("the host's /etc/passwd changed: a maintainer script escaped DPKG_ROOT")
	}
	if exists(hostWants) != hostEnabled {
		t.Error("the host's systemd configuration changed: a maintainer script escaped DPKG_ROOT")
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unitCommand returns the command line of directive (ExecCondition, ExecStart) in an installed unit,
// with /usr/bin/mxedge pointed into root.
func unitCommand(t testing.TB, root, directive string) []string {
	t.Helper()
	for _, line := range strings.Split(string(readFile(t, filepath.Join(root, "usr/lib/systemd/system/mxedge.service"))), "\n") {
		if v, ok := strings.CutPrefix(line, directive+"="); ok {
			args := strings.Fields(v)
			if args[0] != "/usr/bin/mxedge" {
				t.Fatalf("%s runs %s, want /usr/bin/mxedge", directive, args[0])
			}
			args[0] = filepath.Join(root, args[0])
			return args
		}
	}
	t.Fatalf("the installed unit has no %s=", directive)
	return nil
}

// TestDebNotConfigured: the package installs and enables the service with a default configuration
// that serves nobody (no live client), and the service does not start on it: the unit's
// ExecCondition= exits 78 saying "not configured: run `mxedge register` or edit …", which systemd
// treats as a skipped start, not a failure; and run itself, were it started anyway, sets that as
// its STATUS= and exits 78 too. Both run the installed binary as the unit would, on the installed
// configuration (--config points into the root instead of the host's /etc).
func TestDebNotConfigured(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("dpkg --root needs root (the test environment runs as root)")
	}
	need(t, "dpkg", "deb-systemd-helper")
	deb := debFor(t, "amd64")
	root := dpkgRoot(t)
	run(t, nil, "dpkg", "--root="+root, "--force-script-chrootless", "--install", deb)
	if !exists(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/mxedge.service")) {
		t.Error("the service is not enabled after install")
	}
	conf := filepath.Join(root, "etc/mxedge/mxedge.yaml")
	for _, live := range []string{"\nclients:", "\nupstreams:", "change-me"} {
		if bytes.Contains(readFile(t, conf), []byte(live)) {
			t.Errorf("the shipped configuration sets %q", strings.TrimSpace(live))
		}
	}
	want := "not configured: run `mxedge register` or edit " + conf

	cond := append(unitCommand(t, root, "ExecCondition"), "--config", conf)
	out, err := exec.Command(cond[0], cond[1:]...).CombinedOutput()
	if code := exitCode(err); code != 78 || !strings.Contains(string(out), want) {
		t.Errorf("ExecCondition %v: exit %d (want 78, a skipped start: 1..254)\n%s", cond, code, out)
	}

	sock := filepath.Join(t.TempDir(), "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	start := append(unitCommand(t, root, "ExecStart"), "--config", conf)
	cmd := exec.Command(start[0], start[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	out, err = cmd.CombinedOutput()
	if code := exitCode(err); code != 78 || !strings.Contains(string(out), want) {
		t.Errorf("ExecStart %v: exit %d, want 78\n%s", start, code, out)
	}
	nconn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := nconn.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "STATUS="+want {
		t.Errorf("sd_notify: %v %q, want STATUS=%s", err, buf[:n], want)
	}
	if unit := string(readFile(t, filepath.Join(root, "usr/lib/systemd/system/mxedge.service"))); !strings.Contains(unit, "RestartPreventExitStatus=78") {
		t.Error("the unit would restart an unconfigured edge in a loop (no RestartPreventExitStatus=78)")
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestCopyrightListsEveryModule: debian/copyright names every Go module linked into the binary
// (`go version -m`), so a new dependency cannot ship without its licence.
func TestCopyrightListsEveryModule(t *testing.T) {
	bin := goBuild(t, "amd64")
	var files []string
	inFiles := false // the line continues a Files: field (copyright-format 1.0: leading space)
	for _, line := range strings.Split(string(readFile(t, "debian/copyright")), "\n") {
		switch v, ok := strings.CutPrefix(line, "Files: "); {
		case ok:
			files, inFiles = append(files, v), true
		case inFiles && strings.HasPrefix(line, " "):
			files[len(files)-1] += " " + strings.TrimSpace(line)
		default:
			inFiles = false
		}
	}
	listed := map[string]bool{}
	for _, f := range files {
		for _, m := range strings.Split(f, ",") {
			listed[strings.TrimSpace(m)] = true
		}
	}
	for _, line := range strings.Split(run(t, nil, "go", "version", "-m", bin), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "dep" && !listed[f[1]] {
			t.Errorf("debian/copyright has no Files: stanza for %s, linked into the binary", f[1])
		}
	}
}
