package spool

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeafPackage enforces docs/architecture.md: the spool is a leaf and
// imports no other mxedge package (survivability wires it to the proxy).
func TestLeafPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "mxedge/survivability/spool" && (dep == "mxedge" || strings.HasPrefix(dep, "mxedge/")) {
			t.Errorf("spool imports %s: it must stay a leaf package", dep)
		}
	}
}
