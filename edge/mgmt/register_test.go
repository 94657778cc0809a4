package mgmt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/mgmt"
	"mxedge/edge/mgmt/mgmttest"
	"mxedge/pki"
)

const goodConfig = "# cloud document\nupstreams:\n  tls:\n    certificate: edge.crt\n    key: edge.key\n    ca: ca.pem\n"

// stagedFilesExist is a ValidateConfig that checks, as config.Parse would, that the relative
// paths of the document resolve to the staged certificate, key and CA bundle.
func stagedFilesExist(path string, doc []byte) error {
	for _, n := range []string{"edge.crt", "edge.key", "ca.pem"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), n)); err != nil {
			return err
		}
	}
	if strings.Contains(string(doc), "bad") {
		return fmt.Errorf("%s:1: bad document", path)
	}
	return nil
}

func TestRegisterHappyPath(t *testing.T) {
	srv := mgmttest.New(t, mgmttest.Options{Config: []byte(goodConfig)})
	srv.AddCode("ABC-123", mgmttest.CodeValid)
	dir := filepath.Join(t.TempDir(), "state")
	res, err := mgmt.Register(context.Background(), mgmt.RegisterOptions{
		Code: "ABC-123", Cloud: srv.URL, CA: srv.CAPEM, StateDir: dir, Version: "1.2.3",
		ValidateConfig: stagedFilesExist,
	})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if res.Regfile != filepath.Join(dir, mgmt.RegfileName) || res.Registration.EdgeID != "edge-1" {
		t.Errorf("result = %+v", res)
	}
	modes := map[string]os.FileMode{
		mgmt.KeyName: 0o600, mgmt.CertName: 0o644, mgmt.CABundleName: 0o644, mgmt.CloudCAName: 0o644,
		mgmt.CloudConfigName: 0o640, mgmt.RegfileName: 0o600,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(modes) {
		t.Errorf("state dir holds %d entries, want %d (no staging leftovers)", len(ents), len(modes))
	}
	reg, err := mgmt.LoadRegistration(res.Regfile)
	if err != nil {
		t.Fatal(err)
	}
	if reg.EdgeID != "edge-1" || reg.Cloud != srv.URL || reg.RegisteredAt.IsZero() || reg.CloudCA == "" {
		t.Errorf("regfile = %+v", reg)
	}
	if _, err := pki.LoadKeyPair(reg.Certificate, reg.Key); err != nil {
		t.Errorf("certificate and key: %v", err)
	}
	if b, _ := os.ReadFile(reg.Config); string(b) != goodConfig {
		t.Errorf("cloud config = %q", b)
	}
	got := srv.LastRegister()
	if got.Facts.Hostname == "" || got.Facts.Version != "1.2.3" || got.Facts.MgmtIP != "127.0.0.1" || got.Facts.Time.IsZero() {
		t.Errorf("facts = %+v", got.Facts)
	}
	if _, err := pki.ParseCSR([]byte(got.CSR)); err != nil {
		t.Errorf("csr: %v", err)
	}

	// The code is single use, and a registered edge refuses without force.
	_, err = mgmt.Register(context.Background(), mgmt.RegisterOptions{Code: "ABC-123", Cloud: srv.URL, CA: srv.CAPEM, StateDir: dir})
	if !errors.Is(err, mgmt.ErrRegistered) {
		t.Errorf("re-run without force: %v, want ErrRegistered", err)
	}
	srv.AddCode("NEW-456", mgmttest.CodeValid)
	res2, err := mgmt.Register(context.Background(), mgmt.RegisterOptions{Code: "NEW-456", Cloud: srv.URL, CA: srv.CAPEM,
		StateDir: dir, Force: true, ValidateConfig: stagedFilesExist})
	if err != nil {
		t.Fatalf("re-run with force: %v", err)
	}
	if res2.Registration.EdgeID != "edge-2" {
		t.Errorf("forced registration id %q", res2.Registration.EdgeID)
	}
	if _, err := pki.LoadKeyPair(filepath.Join(dir, mgmt.CertName), filepath.Join(dir, mgmt.KeyName)); err != nil {
		t.Errorf("after force: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(modes) {
		t.Errorf("after force the state dir holds %d entries, want %d", len(ents), len(modes))
	}
}

func TestRegisterFailures(t *testing.T) {
	now := time.Now()
	other, err := pki.NewCA(pki.CAOptions{CommonName: "someone else"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		srv     mgmttest.Options
		code    string // state of code "C" on the server; "" = unknown
		cloud   string // "" = the server
		ca      []byte // nil = the server's CA; "system" roots with noCA
		noCA    bool
		pre     map[string]string // files in the state dir before
		force   bool
		maxSkew time.Duration
		want    error
		msg     string
		calls   int // POST /register requests the server must have seen
	}{
		{name: "bad code", want: mgmt.ErrInvalidCode, msg: "registration code is invalid", calls: 1},
		{name: "expired code", code: mgmttest.CodeExpired, want: mgmt.ErrExpiredCode, msg: "expired", calls: 1},
		{name: "used code", code: mgmttest.CodeUsed, want: mgmt.ErrUsedCode, msg: "already used", calls: 1},
		{name: "unreachable", code: mgmttest.CodeValid, cloud: "closed", want: mgmt.ErrUnreachable, msg: "cloud unreachable"},
		{name: "wrong pinned ca", code: mgmttest.CodeValid, ca: pki.EncodeCertificates(other.Cert), want: mgmt.ErrTLS, msg: "unknown authority"},
		{name: "system roots", code: mgmttest.CodeValid, noCA: true, want: mgmt.ErrTLS, msg: "tls failure"},
		{name: "clock behind server date", code: mgmttest.CodeValid, srv: mgmttest.Options{Now: func() time.Time { return time.Now().Add(time.Hour) }},
			want: mgmt.ErrClockSkew, msg: "fix the clock"},
		{name: "clock ahead of server date", code: mgmttest.CodeValid, srv: mgmttest.Options{Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }},
			want: mgmt.ErrClockSkew, msg: "10m0s apart"},
		{name: "server certificate from the future", code: mgmttest.CodeValid,
			srv:  mgmttest.Options{ServerNotBefore: now.Add(2 * time.Hour), ServerNotAfter: now.Add(48 * time.Hour)},
			want: mgmt.ErrClockSkew, msg: "controller's certificate is valid from"},
		{name: "server certificate expired", code: mgmttest.CodeValid,
			srv:  mgmttest.Options{ServerNotBefore: now.Add(-48 * time.Hour), ServerNotAfter: now.Add(-time.Hour)},
			want: mgmt.ErrTLS, msg: "expired at"},
		{name: "already registered", code: mgmttest.CodeValid, pre: map[string]string{"mxedge.reg": "{}", "cache.db": "x"},
			want: mgmt.ErrRegistered, msg: "--force"},
		{name: "leftover key", code: mgmttest.CodeValid, pre: map[string]string{"edge.key": "mine"},
			want: mgmt.ErrRegistered, msg: "edge.key exists"},
		{name: "config rejected", code: mgmttest.CodeValid, srv: mgmttest.Options{Config: []byte("bad: [\n")},
			pre: map[string]string{"cache.db": "x"}, want: mgmt.ErrConfigRejected, msg: "bad document", calls: 1},
		{name: "config rejected with force keeps the old registration", code: mgmttest.CodeValid,
			srv:   mgmttest.Options{Config: []byte("bad: [\n")},
			pre:   map[string]string{"mxedge.reg": "{}", "edge.key": "old", "edge.crt": "old", "cloud.yaml": "old"},
			force: true, want: mgmt.ErrConfigRejected, msg: "configuration rejected", calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.srv.Config == nil {
				tt.srv.Config = []byte(goodConfig)
			}
			srv := mgmttest.New(t, tt.srv)
			if tt.code != "" {
				srv.AddCode("C", tt.code)
			}
			dir := t.TempDir()
			for n, c := range tt.pre {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := dirState(t, dir)
			o := mgmt.RegisterOptions{Code: "C", Cloud: srv.URL, CA: srv.CAPEM, StateDir: dir, Force: tt.force,
				ValidateConfig: stagedFilesExist, MaxClockSkew: tt.maxSkew}
			if tt.cloud == "closed" {
				o.Cloud = closedURL(t)
			}
			if tt.ca != nil {
				o.CA = tt.ca
			}
			if tt.noCA {
				o.CA = nil
			}
			_, err := mgmt.Register(context.Background(), o)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) || strings.Contains(err.Error(), ".register-") {
				t.Errorf("err = %q, want it to say %q (and no staging path)", err, tt.msg)
			}
			if after := dirState(t, dir); !equalMaps(before, after) {
				t.Errorf("state dir changed:\nbefore %v\nafter  %v", before, after)
			}
			if n := srv.Requests("POST " + mgmt.PathRegister); n != tt.calls {
				t.Errorf("POST /register requests = %d, want %d (the code is spent only after the preflight)", n, tt.calls)
			}
		})
	}
}

// A failed register into a state directory that did not exist leaves no directory behind.
func TestRegisterFailureRemovesNewStateDir(t *testing.T) {
	srv := mgmttest.New(t, mgmttest.Options{Config: []byte("bad\n")})
	srv.AddCode("C", mgmttest.CodeValid)
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	_, err := mgmt.Register(context.Background(), mgmt.RegisterOptions{Code: "C", Cloud: srv.URL, CA: srv.CAPEM,
		StateDir: dir, ValidateConfig: stagedFilesExist})
	if !errors.Is(err, mgmt.ErrConfigRejected) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "cloud.yaml")) {
		t.Errorf("err = %q, want it to name the final path", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("left %v behind", ents)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRegisterOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    mgmt.RegisterOptions
	}{
		{"no code", mgmt.RegisterOptions{Cloud: "https://x"}},
		{"http cloud", mgmt.RegisterOptions{Code: "c", Cloud: "http://x"}},
		{"negative skew", mgmt.RegisterOptions{Code: "c", Cloud: "https://x", MaxClockSkew: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err == nil {
				t.Error("Validate accepted bad options")
			}
		})
	}
}
