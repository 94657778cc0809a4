package install

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeafPackage enforces docs/architecture.md: install is a leaf and imports
// no other mxedge package.
func TestLeafPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "mxedge/install" && (dep == "mxedge" || strings.HasPrefix(dep, "mxedge/")) {
			t.Errorf("install imports %s: it must stay a leaf package", dep)
		}
	}
}
