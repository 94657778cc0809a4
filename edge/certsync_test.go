package edge_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge"
	"mxedge/edge/config"
	"mxedge/edge/mgmt"
	"mxedge/pki/pkitest"
)

// TestCertificateSyncInstallsLocalEAPTLSFiles: a registered edge with local EAP-TLS pulls the org
// CA and the listener's certificate and key from the cloud, writes them over the files
// survivability.eap_tls names (the key 0600) and reloads through its one queue.
func TestCertificateSyncInstallsLocalEAPTLSFiles(t *testing.T) {
	lab := pkitest.Must(t)
	cloud := pkitest.Must(t) // the organization PKI the cloud delivers
	up := startUpstream(t, lab)
	dir := t.TempDir()
	eap := map[string]string{"certificate": lab.ServerCert, "key": lab.ServerKey, "ca": lab.CAFile}
	paths := map[string]string{}
	for name, src := range eap {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		paths[name] = filepath.Join(dir, "eap-"+name+".pem")
		if err := os.WriteFile(paths[name], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := lifecycleDoc(dir, lab, up, "secret-0", "") + fmt.Sprintf(
		"survivability:\n  eap_tls: {certificate: %s, key: %s, ca: %s}\n", paths["certificate"], paths["key"], paths["ca"])
	ctl, reg := registered(t, filepath.Join(dir, "state"), doc)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ctl.SetCertificates(&mgmt.ServerCertificates{OrgCA: read(cloud.CAFile), Certificate: read(cloud.ServerCert), Key: read(cloud.ServerKey)})
	cfg, err := config.Load(reg.Config)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	e, err := edge.New(cfg, edge.Options{
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
		Signals:       make(chan os.Signal, 1),
		ShutdownGrace: time.Second,
		Sync:          &mgmt.SyncOptions{Registration: reg, Interval: 50 * time.Millisecond, Jitter: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runEdge(t, e)
	want := read(cloud.ServerCert)
	deadline := time.Now().Add(15 * time.Second)
	for !(read(paths["certificate"]) == want && strings.Contains(logs.String(), "server certificates synced")) {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not installed and reloaded within 15 s; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !bytes.Equal([]byte(read(paths["ca"])), []byte(read(cloud.CAFile))) {
		t.Error("org CA not installed")
	}
	if fi, err := os.Stat(paths["key"]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v", fi.Mode(), err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
