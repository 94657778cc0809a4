package cli

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/edge/mgmt/mgmttest"
	"mxedge/pki"
)

// cloudConfig is a complete configuration as a controller sends it: relative paths resolve in the
// state directory, next to the files register writes.
const cloudConfig = `listen:
  auth: ["127.0.0.1:0"]
  acct: ["127.0.0.1:0"]
clients:
  - name: sw1
    address: 10.0.0.0/8
    secret: s3cret
upstreams:
  tls:
    certificate: edge.crt
    key: edge.key
    ca: ca.pem
  servers:
    - name: cloud
      address: 127.0.0.1:2083
cache:
  path: cache.db
control:
  socket: control.sock
`

func registerCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRegisterCmdWith(BuildInfo{Version: "1.2.3"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func writeCA(t *testing.T, srv *mgmttest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cloud-ca.pem")
	if err := os.WriteFile(p, srv.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestRegisterCommand(t *testing.T) {
	srv := mgmttest.New(t, mgmttest.Options{Config: []byte(cloudConfig)})
	srv.AddCode("GOOD", mgmttest.CodeValid)
	ca := writeCA(t, srv)
	dir := filepath.Join(t.TempDir(), "var-lib-mxedge")

	out, err := registerCLI(t, "--registration-code", "GOOD", "--cloud", srv.URL, "--ca", ca, "--state-dir", dir)
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	regfile := filepath.Join(dir, "mxedge.reg")
	if !strings.HasSuffix(out, "registration finished successfully (regfile at "+regfile+")\n") {
		t.Errorf("output:\n%s", out)
	}
	want := []string{"ca.pem", "cloud-ca.pem", "cloud.yaml", "edge.crt", "edge.key", "mxedge.reg"}
	if got := listDir(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("state dir = %v, want %v", got, want)
	}
	for name, mode := range map[string]os.FileMode{"edge.key": 0o600, "mxedge.reg": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", name, fi.Mode(), err, mode)
		}
	}
	// The daemon can load what register wrote, exactly as run would.
	path, reg, err := mgmt.ConfigPath(dir, DefaultConfigPath, false)
	if err != nil || reg == nil || path != filepath.Join(dir, "cloud.yaml") {
		t.Fatalf("ConfigPath = %q %v %v", path, reg, err)
	}
	if _, err := config.Load(path); err != nil {
		t.Errorf("the cloud configuration does not load: %v", err)
	}
	if got := srv.LastRegister().Facts.Version; got != "1.2.3" {
		t.Errorf("version fact %q", got)
	}

	// Again without --force: refused, exit 10, nothing changed, code not spent.
	before := snapshotDir(t, dir)
	srv.AddCode("SECOND", mgmttest.CodeValid)
	_, err = registerCLI(t, "--registration-code", "SECOND", "--cloud", srv.URL, "--ca", ca, "--state-dir", dir)
	assertExit(t, err, ExitRegistered, "already registered")
	if after := snapshotDir(t, dir); after != before {
		t.Error("a refused re-registration changed the state dir")
	}
	// --force without --cloud reuses the registered controller.
	out, err = registerCLI(t, "--registration-code", "SECOND", "--ca", ca, "--state-dir", dir, "--force")
	if err != nil {
		t.Fatalf("register --force: %v\n%s", err, out)
	}
	if reg, _ := mgmt.LoadRegistration(regfile); reg.EdgeID != "edge-2" {
		t.Errorf("after --force the regfile names %q", reg.EdgeID)
	}
}

func assertExit(t *testing.T, err error, code int, msg string) {
	t.Helper()
	t.Logf("mxedge: %v", err)
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v (%T), want an ExitError with code %d", err, err, code)
	}
	if ee.Code != code {
		t.Errorf("exit code %d, want %d (%v)", ee.Code, code, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q does not say %q", err, msg)
	}
}

// snapshotDir is every file's name, mode and content.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range listDir(t, dir) {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := os.ReadFile(filepath.Join(dir, n))
		b.WriteString(n + " " + fi.Mode().String() + " " + string(c) + "\n")
	}
	return b.String()
}

func TestRegisterCommandFailures(t *testing.T) {
	now := time.Now()
	other, err := pki.NewCA(pki.CAOptions{CommonName: "not the controller"})
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCA, pki.EncodeCertificates(other.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		srv      mgmttest.Options
		state    string // code state
		cloud    string // "closed": nothing listens
		ca       string // "other", "none"
		existing bool   // a regfile exists
		code     int
		msg      string
	}{
		{name: "bad code", code: ExitInvalidCode, msg: "registration code is invalid"},
		{name: "expired code", state: mgmttest.CodeExpired, code: ExitExpiredCode, msg: "registration code has expired"},
		{name: "used code", state: mgmttest.CodeUsed, code: ExitUsedCode, msg: "registration code was already used"},
		{name: "unreachable", state: mgmttest.CodeValid, cloud: "closed", code: ExitUnreachable, msg: "cloud unreachable"},
		{name: "wrong pinned ca", state: mgmttest.CodeValid, ca: "other", code: ExitTLS, msg: "certificate signed by unknown authority"},
		{name: "system roots do not know the controller", state: mgmttest.CodeValid, ca: "none", code: ExitTLS, msg: "tls failure"},
		{name: "clock skew (date)", state: mgmttest.CodeValid, srv: mgmttest.Options{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }},
			code: ExitClockSkew, msg: "fix the clock"},
		{name: "clock skew (certificate)", state: mgmttest.CodeValid,
			srv:  mgmttest.Options{ServerNotBefore: now.Add(time.Hour), ServerNotAfter: now.Add(24 * time.Hour)},
			code: ExitClockSkew, msg: "clock skew"},
		{name: "configuration rejected", state: mgmttest.CodeValid, srv: mgmttest.Options{Config: []byte("clients:\n  - name: x\n")},
			code: ExitConfigRejected, msg: "configuration rejected"},
		{name: "already registered", state: mgmttest.CodeValid, existing: true, code: ExitRegistered, msg: "--force"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.srv.Config == nil {
				tt.srv.Config = []byte(cloudConfig)
			}
			srv := mgmttest.New(t, tt.srv)
			if tt.state != "" {
				srv.AddCode("CODE", tt.state)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cache.db"), []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.existing {
				if err := os.WriteFile(filepath.Join(dir, "mxedge.reg"), []byte("{}"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshotDir(t, dir)
			args := []string{"--registration-code", "CODE", "--cloud", srv.URL, "--state-dir", dir}
			switch tt.ca {
			case "":
				args = append(args, "--ca", writeCA(t, srv))
			case "other":
				args = append(args, "--ca", otherCA)
			}
			if tt.cloud == "closed" {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				args[3] = "https://" + l.Addr().String()
				l.Close()
			}
			out, err := registerCLI(t, args...)
			assertExit(t, err, tt.code, tt.msg)
			if strings.Contains(out, "successfully") {
				t.Errorf("output claims success:\n%s", out)
			}
			if after := snapshotDir(t, dir); after != before {
				t.Errorf("state dir changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestRegisterCommandUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no code", []string{"--cloud", "https://127.0.0.1:1"}},
		{"no cloud and no registration", []string{"--registration-code", "X", "--state-dir", "/nonexistent-mxedge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := registerCLI(t, tt.args...)
			if !errors.Is(err, ErrUsage) {
				t.Errorf("err = %v, want ErrUsage", err)
			}
		})
	}
}
