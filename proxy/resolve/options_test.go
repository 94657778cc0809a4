package resolve

import (
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"servers", Options{Servers: []string{"127.0.0.1:5353", "[::1]:53", "192.0.2.53"}}, true},
		{"server name", Options{Servers: []string{"dns.example:53"}}, false},
		{"server port 0", Options{Servers: []string{"127.0.0.1:0"}}, false},
		{"negative timeout", Options{Timeout: -1}, false},
		{"negative attempts", Options{Attempts: -1}, false},
		{"negative ttl", Options{NegativeTTL: -time.Second}, false},
		{"min above max", Options{MinTTL: 2 * time.Hour}, false},
		{"min above explicit max", Options{MinTTL: time.Minute, MaxTTL: time.Second}, false},
		{"clamp", Options{MinTTL: time.Second, MaxTTL: time.Minute}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.o.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if _, err := New(tc.o); (err == nil) != tc.ok {
				t.Fatalf("New() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNewServersFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"two servers", "search lab.example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n", []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{"none listed", "search lab.example\n", []string{"127.0.0.1:53", "[::1]:53"}},
		{"missing file", "", []string{"127.0.0.1:53", "[::1]:53"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "resolv"+strconv.Itoa(i))
			if tc.conf != "" {
				writeFile(t, path, tc.conf)
			}
			r, err := New(Options{ResolvConf: path})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Servers(); !slices.Equal(got, tc.want) {
				t.Fatalf("servers = %v, want %v", got, tc.want)
			}
		})
	}
}

// The system defaults (/etc/resolv.conf, /etc/hosts) load, and localhost
// resolves from /etc/hosts without any name server.
func TestSystemDefaults(t *testing.T) {
	r, err := New(Options{Servers: []string{"127.0.0.1:1"}, Timeout: 50 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(DefaultHostsFile); err != nil {
		t.Fatalf("this host has no %s: %v", DefaultHostsFile, err)
	}
	ts, err := r.Resolve(context.Background(), "localhost", 2083, false)
	if err != nil || len(ts) == 0 || !ts[0].Addr.Addr().IsLoopback() {
		t.Fatalf("localhost: %v, %v", ts, err)
	}
	if _, err := New(Options{}); err != nil {
		t.Fatalf("New with system resolv.conf: %v", err)
	}
}

// resolve is a leaf: it imports no other mxedge package (docs/architecture.md).
func TestLeafImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		ast, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "mxedge" || strings.HasPrefix(p, "mxedge/") {
				t.Errorf("%s imports %s: proxy/resolve must stay a leaf", f, p)
			}
		}
	}
}

func BenchmarkResolveCached(b *testing.B) {
	e := newEnv(b, nil)
	e.z.set(b, "up.example. 3600 IN A 192.0.2.1", "up.example. 3600 IN A 192.0.2.2")
	e.z.set(b, "up.example. 3600 IN AAAA 2001:db8::1")
	ctx := context.Background()
	mustResolve(b, e, "up.example", 2083, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.r.Resolve(ctx, "up.example", 2083, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolveMiss(b *testing.B) {
	e := newEnv(b, nil)
	e.z.set(b, "up.example. 3600 IN A 192.0.2.1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e.r.Invalidate("up.example")
		if _, err := e.r.Resolve(ctx, "up.example", 2083, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resolutions/s")
}
