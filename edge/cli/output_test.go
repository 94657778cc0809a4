package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"mxedge/cache"
	"mxedge/edge"
	"mxedge/edge/control"
	"mxedge/proxy"
)

// healthyStatus is an edge forwarding to two live upstreams with a long-lived certificate.
func healthyStatus() edge.Status {
	return edge.Status{
		Mode: "up", Since: opsT0.Add(-time.Hour), Started: opsT0.Add(-26 * time.Hour),
		Upstreams: []proxy.UpstreamStatus{
			{Name: "cloud-a", State: proxy.StateUp, Since: opsT0.Add(-time.Hour), Addr: netip.MustParseAddrPort("192.0.2.10:2083"),
				RTT: 181183 * time.Microsecond, Connections: 2, Inflight: 3, Answered: 1200},
			{Name: "cloud-b", State: proxy.StateUp, Since: opsT0.Add(-time.Hour), Addr: netip.MustParseAddrPort("192.0.2.11:2083"),
				RTT: 20 * time.Millisecond, Connections: 1, Answered: 900},
		},
		Cache: cache.Stats{Entries: 12}, Received: 2100, Forwarded: 2100, Answered: 2100,
		Dropped: map[string]uint64{}, Spool: 0, Listeners: []string{"radius-auth udp 0.0.0.0:1812"},
		Certs: []edge.CertExpiry{{File: "/var/lib/mxedge/edge.crt", Subject: "CN=edge-01", NotAfter: opsT0.Add(300 * 24 * time.Hour), Days: 300}},
	}
}

func expiredStatus() edge.Status {
	st := healthyStatus()
	st.Certs = append(st.Certs, edge.CertExpiry{File: "/var/lib/mxedge/ca.pem", Subject: "CN=Org CA", NotAfter: opsT0.Add(-time.Hour)})
	return st
}

// TestStatusSchema: the status document is mxedge.status.v1 in JSON and YAML, and neither leaks a
// Go field name or a nanosecond count.
func TestStatusSchema(t *testing.T) {
	env := testOpsEnv()
	for _, tc := range []struct {
		golden string
		status func() any
		args   []string
	}{
		{"status_v1_down.json.golden", func() any { return fakeStatus() }, []string{"-o", "json"}},
		{"status_v1_down.yaml.golden", func() any { return fakeStatus() }, []string{"-o", "yaml"}},
		{"status_v1_up.json.golden", func() any { return healthyStatus() }, []string{"-o", "json"}},
		{"status_v1_legacy_flag.json.golden", func() any { return healthyStatus() }, []string{"--json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			sock := startFakeDaemon(t, control.Options{Status: tc.status, Clients: fakeClients})
			out, err := runOps(t, newStatusCmdEnv(env), append(tc.args, "--socket", sock)...)
			if err != nil {
				t.Fatal(err)
			}
			opsGolden(t, tc.golden, out)
			assertPublicSchema(t, out, "mxedge.status.v1", strings.HasSuffix(tc.golden, ".yaml.golden"))
		})
	}
}

// assertPublicSchema decodes a document and checks the conventions of docs/output.md: "schema"
// first, snake_case keys, no integer that could be a nanosecond duration behind a *_seconds key.
func assertPublicSchema(t *testing.T, out, schema string, isYAML bool) {
	t.Helper()
	var node yaml.Node // JSON is YAML: one decoder keeps the key order of both
	if err := yaml.Unmarshal([]byte(out), &node); err != nil {
		t.Fatalf("decode: %v", err)
	}
	doc := node.Content[0]
	if doc.Kind != yaml.MappingNode || doc.Content[0].Value != "schema" || doc.Content[1].Value != schema {
		t.Fatalf("first key is not schema: %s", schema)
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if path != ".dropped" && k != strings.ToLower(k) || strings.ContainsAny(k, " -") && path != ".dropped" {
					t.Errorf("key %s%s is not snake_case", path, k)
				}
				walk(n.Content[i+1], path+"."+k)
			}
		}
		for _, c := range n.Content {
			if n.Kind != yaml.MappingNode {
				walk(c, path+"[]")
			}
		}
	}
	walk(doc, "")
	if !isYAML {
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
	}
}

// TestStatusCheck: every health level prints its line and exits with its documented code.
func TestStatusCheck(t *testing.T) {
	env := testOpsEnv()
	for _, tc := range []struct {
		name   string
		status func() any
		code   int
		line   string
	}{
		{"ok", func() any { return healthyStatus() }, 0, "MXEDGE OK - mode up, 2 of 2 upstreams up\n"},
		{"degraded", func() any { return fakeStatus() }, 1,
			"MXEDGE DEGRADED - mode down, 0 of 2 upstreams up: cloud NAC unreachable: answering locally from the cache; certificate \"CN=radius.example.com\" in /etc/mxedge/eap.pem expires in 9 days\n"},
		{"critical", func() any { return expiredStatus() }, 2,
			"MXEDGE CRITICAL - mode up, 2 of 2 upstreams up: certificate \"CN=Org CA\" in /var/lib/mxedge/ca.pem expired\n"},
		{"unknown", func() any { return []int{1} }, 3, "MXEDGE UNKNOWN - status: decode the daemon's answer: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startFakeDaemon(t, control.Options{Status: tc.status, Clients: fakeClients})
			out, err := runOps(t, newStatusCmdEnv(env), "--check", "--socket", sock)
			if got := exitCode(err); got != tc.code {
				t.Fatalf("exit code %d (%v), want %d", got, err, tc.code)
			}
			if !strings.HasPrefix(out, tc.line) {
				t.Fatalf("line %q, want %q", out, tc.line)
			}
		})
	}
	t.Run("not-running", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "control.sock")
		out, err := runOps(t, newStatusCmdEnv(env), "--check", "--socket", sock)
		if exitCode(err) != 2 || !errors.Is(err, control.ErrNoDaemon) || !strings.HasPrefix(out, "MXEDGE CRITICAL - mxedge is not running") {
			t.Fatalf("out %q err %v", out, err)
		}
	})
	t.Run("json", func(t *testing.T) {
		sock := startFakeDaemon(t, control.Options{Status: func() any { return fakeStatus() }})
		out, err := runOps(t, newStatusCmdEnv(env), "--check", "-o", "json", "--socket", sock)
		var d statusDoc
		if exitCode(err) != 1 || json.Unmarshal([]byte(out), &d) != nil || d.Health != healthDegraded {
			t.Fatalf("exit %d, health %q", exitCode(err), d.Health)
		}
	})
}

// exitCode is what main exits with for err (main.go).
func exitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

func TestOutputFlag(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{Status: func() any { return healthyStatus() }})
	for _, args := range [][]string{{"-o", "xml"}, {"--json", "-o", "yaml"}} {
		_, err := runOps(t, newStatusCmdEnv(testOpsEnv()), append(args, "--socket", sock)...)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestVersionOutput(t *testing.T) {
	info := BuildInfo{Version: "1.4.0", Commit: "abc1234", Date: "2026-11-20T10:00:00Z"}
	run := func(args ...string) string {
		t.Helper()
		root := New(info)
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	text := run("version")
	if run("--version") != text {
		t.Errorf("--version prints %q, version %q", run("--version"), text)
	}
	want := "mxedge 1.4.0\ncommit abc1234\nbuilt 2026-11-20T10:00:00Z\n" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if text != want {
		t.Errorf("version:\n%s\nwant\n%s", text, want)
	}
	// The Go version and platform differ between machines: the golden file has placeholders.
	repl := strings.NewReplacer(runtime.Version(), "GOVERSION", `"`+runtime.GOOS+`"`, `"GOOS"`, `"`+runtime.GOARCH+`"`, `"GOARCH"`)
	js := run("version", "-o", "json")
	opsGolden(t, "version_v1.json.golden", repl.Replace(js))
	assertPublicSchema(t, js, "mxedge.version.v1", false)
	opsGolden(t, "version_v1.yaml.golden", strings.NewReplacer(runtime.Version(), "GOVERSION", "os: "+runtime.GOOS, "os: GOOS", "arch: "+runtime.GOARCH, "arch: GOARCH").Replace(run("version", "-o", "yaml")))
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestStatusCheckLab: against a real edge (the --dev lab's), status --check is OK while the lab
// cloud answers and DEGRADED (exit 1) once its WAN is cut and the edge answers locally.
func TestStatusCheckLab(t *testing.T) {
	l, _ := startLabEdge(t)
	sock := filepath.Join(l.Dir, "control.sock")
	env := opsEnv{now: time.Now, timeout: 2 * time.Second}
	check := func() (string, int) {
		out, err := runOps(t, newStatusCmdEnv(env), "--check", "--socket", sock)
		return out, exitCode(err)
	}
	if out, code := check(); code != 0 || !strings.HasPrefix(out, "MXEDGE OK - mode up, 1 of 1 upstreams up") {
		t.Fatalf("before the cut: exit %d %q", code, out)
	}
	if err := os.WriteFile(l.CutFile(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second)
	out, code := check()
	const local = "cloud NAC unreachable: answering locally from the cache"
	for (code != exitDegraded || !strings.Contains(out, local)) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		out, code = check()
	}
	if code != exitDegraded || !strings.Contains(out, local) {
		t.Fatalf("after the cut: exit %d %q", code, out)
	}
}

func TestClientsSchema(t *testing.T) {
	sock := startFakeDaemon(t, control.Options{Clients: fakeClients})
	for _, f := range []string{"json", "yaml"} {
		out, err := runOps(t, newClientsCmdEnv(testOpsEnv()), "--socket", sock, "-o", f)
		if err != nil {
			t.Fatal(err)
		}
		opsGolden(t, "clients_v1."+f+".golden", out)
		assertPublicSchema(t, out, "mxedge.clients.v1", f == "yaml")
	}
}
