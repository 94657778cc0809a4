package edge_test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedImports says which mxedge packages each package may import (non-test code). Dependencies
// point one way: leaf packages import no other mxedge package, and only edge wires components.
var allowedImports = map[string][]string{
	"mxedge":                      {"mxedge/edge/cli", "mxedge/edge/config"},
	"mxedge/cache":                {},
	"mxedge/pki":                  {},
	"mxedge/pki/pkitest":          {"mxedge/pki"},
	"mxedge/install":              {},
	"mxedge/proxy/packet":         {},
	"mxedge/proxy/resolve":        {},
	"mxedge/proxy/sockio":         {},
	"mxedge/proxy/radsec":         {"mxedge/proxy/packet", "mxedge/proxy/sockio"},
	"mxedge/proxy/radsectest":     {"mxedge/proxy/packet", "mxedge/proxy/radsec"},
	"mxedge/proxy":                {"mxedge/proxy/packet", "mxedge/proxy/radsec", "mxedge/proxy/sockio"},
	"mxedge/survivability/eaptls": {},
	"mxedge/survivability/spool":  {},
	"mxedge/survivability/localeap": {"mxedge/cache", "mxedge/pki", "mxedge/proxy", "mxedge/proxy/packet",
		"mxedge/survivability", "mxedge/survivability/eaptls"},
	"mxedge/packaging":          {},
	"mxedge/survivability":      {"mxedge/proxy", "mxedge/proxy/packet", "mxedge/cache", "mxedge/pki", "mxedge/survivability/eaptls", "mxedge/survivability/spool"},
	"mxedge/edge/peertest":      {},
	"mxedge/edge/config":        {"mxedge/proxy", "mxedge/proxy/packet", "mxedge/pki", "mxedge/cache", "mxedge/survivability", "mxedge/survivability/spool"},
	"mxedge/edge/lab":           {"*"},
	"mxedge/edge/events":        {},
	"mxedge/edge/metrics":       {"mxedge/edge/events"},
	"mxedge/edge/mgmt":          {"mxedge/pki"},
	"mxedge/edge/mgmt/mgmttest": {"mxedge/edge/mgmt", "mxedge/pki"},
	"mxedge/bench/survival":     {"*"},
	"mxedge/edge/control":       {"mxedge/cache", "mxedge/edge/events"},
	"mxedge/edge/notify":        {},
	"mxedge/edge":               {"*"},
	"mxedge/edge/cli":           {"*"},
	"mxedge/bench":              {"*"},

	// The dictionary generator (go generate), never linked into the binary.
	"mxedge/proxy/packet/internal/dictgen": {"mxedge/proxy/packet"},
}

func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "mxedge/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("%s is not in the import rules: add it to allowedImports (and docs/architecture.md)", pkg)
			continue
		}
		if len(allowed) == 1 && allowed[0] == "*" {
			continue
		}
		for _, imp := range imports {
			if imp != "mxedge" && !strings.HasPrefix(imp, "mxedge/") {
				continue
			}
			if !contains(allowed, imp) {
				t.Errorf("%s imports %s, which the architecture forbids", pkg, imp)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
