package pki

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeafImports: pki is a leaf package (docs/architecture.md): it must
// not import any other mxedge package.
func TestLeafImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "mxedge/") && p != "mxedge/pki" {
			t.Errorf("pki imports %s", p)
		}
	}
}
