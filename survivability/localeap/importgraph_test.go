package localeap

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImports enforces docs/architecture.md for this package: survivability/localeap may use the
// request path, the wire format, EAP-TLS, pki, the cache and survivability's attribute helpers;
// never edge (edge wires this package into survivability's decision engine).
func TestImports(t *testing.T) {
	allowed := []string{"mxedge/proxy", "mxedge/proxy/packet", "mxedge/survivability/eaptls", "mxedge/pki", "mxedge/cache", "mxedge/survivability"}
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "mxedge/survivability/localeap").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.HasPrefix(imp, "mxedge/") && !slices.Contains(allowed, imp) {
			t.Errorf("survivability/localeap imports %s, which the architecture forbids", imp)
		}
	}
}
