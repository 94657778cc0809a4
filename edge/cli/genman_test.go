package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenMan: one page per visible command, dated from SOURCE_DATE_EPOCH (reproducible), none for
// the hidden gen-man itself.
func TestGenMan(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	if out, err := execute(t, "gen-man", dir); err != nil {
		t.Fatalf("gen-man: %v\n%s", err, out)
	}
	for _, page := range []string{"mxedge.1", "mxedge-run.1", "mxedge-check.1", "mxedge-cache-list.1", "mxedge-test-auth.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("%s: %v", page, err)
			continue
		}
		if !strings.Contains(string(b), `.TH "MXEDGE" "1" "Nov 2023" "mxedge" "mxedge manual"`) || strings.Contains(string(b), "Auto generated") {
			t.Errorf("%s header:\n%.300s", page, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mxedge-gen-man.1")); err == nil {
		t.Error("a page for the hidden gen-man command")
	}
}
