package edge_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// importRules reads the package table of docs/architecture.md: the first column names a package
// (relative to the module; `main.go` is the module's root package), the last column the mxedge
// packages it may import: "everything", "none", or a list of `package` names. The document is the
// rule; this test only enforces it.
// Packages whose column also says "standard library only" depend on nothing outside it.
func importRules(t *testing.T) (rules map[string][]string, stdOnly []string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules = map[string][]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			t.Fatalf("docs/architecture.md: table row without an import column: %q", line)
		}
		pkg := modulePath(strings.Trim(strings.TrimSpace(cells[0]), "`"))
		may := strings.TrimSpace(cells[len(cells)-1])
		switch {
		case strings.HasPrefix(may, "everything"):
			rules[pkg] = []string{"*"}
		case strings.HasPrefix(may, "none"):
			rules[pkg] = []string{}
			if strings.Contains(may, "standard library only") {
				stdOnly = append(stdOnly, pkg)
			}
		default:
			var allowed []string
			for i, part := range strings.Split(may, "`") {
				if i%2 == 1 {
					allowed = append(allowed, modulePath(part))
				}
			}
			if len(allowed) == 0 {
				t.Fatalf("docs/architecture.md: %s: import column %q names no package", pkg, may)
			}
			rules[pkg] = allowed
		}
	}
	if len(rules) == 0 {
		t.Fatal("docs/architecture.md: no package table")
	}
	return rules, stdOnly
}

func modulePath(rel string) string {
	if rel == "main.go" {
		return "mxedge"
	}
	return "mxedge/" + rel
}

// TestImportGraph enforces docs/architecture.md: every package of the module is in its table, and
// imports only the mxedge packages the table allows (non-test code). Dependencies point one way:
// leaf packages import no other mxedge package, and only edge wires components together.
func TestImportGraph(t *testing.T) {
	rules, stdOnly := importRules(t)
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "mxedge/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		seen[pkg] = true
		allowed, ok := rules[pkg]
		if !ok {
			t.Errorf("%s is not in the package table of docs/architecture.md: add it there", pkg)
			continue
		}
		if slices.Equal(allowed, []string{"*"}) {
			continue
		}
		for _, imp := range imports {
			if imp != "mxedge" && !strings.HasPrefix(imp, "mxedge/") {
				continue
			}
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow", pkg, imp)
			}
		}
	}
	for pkg := range rules {
		if !seen[pkg] {
			t.Errorf("docs/architecture.md lists %s, which does not exist", pkg)
		}
	}
	for _, pkg := range stdOnly {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep != pkg {
				t.Errorf("%s depends on %s: docs/architecture.md allows the standard library only", pkg, dep)
			}
		}
	}
}

// TestBinaryLinksNoTesting: the production binary links no test support. A package that imports
// testing (pki/pkitest, a dependency's fuzz helpers) would bring the testing flags and code into
// mxedge.
func TestBinaryLinksNoTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "mxedge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if fields[0] == "testing" || strings.HasPrefix(fields[0], "testing/") {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == "testing" {
				t.Errorf("the mxedge binary links testing through %s", fields[0])
			}
		}
	}
}
