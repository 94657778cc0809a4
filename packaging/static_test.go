package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxBinarySize is the ceiling for the static binary: a size that fits appliances and still
// catches an accidental heavy dependency.
const maxBinarySize = 30 << 20

// TestMakeBuildStatic builds with the Makefile's own `build` target and proves the result is static
// (file and ldd agree), small, and prints the version it was stamped with.
func TestMakeBuildStatic(t *testing.T) {
	need(t, "make", "file", "ldd")
	bin := filepath.Join(t.TempDir(), "mxedge")
	run(t, nil, "make", "-C", "..", "--no-print-directory", "build", "BIN="+bin, "VERSION=9.9.9-test", "COMMIT=abc1234")

	if out := run(t, nil, "file", "-b", bin); !strings.Contains(out, "statically linked") {
		t.Errorf("file: %s, want statically linked", out)
	} else {
		t.Logf("file: %s", strings.TrimSpace(out))
	}
	// ldd exits 1 for a static executable; "not a dynamic executable" is the proof.
	out, _ := exec.Command("ldd", bin).CombinedOutput()
	if !strings.Contains(string(out), "not a dynamic executable") {
		t.Errorf("ldd: %s, want not a dynamic executable", out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("make build: %d bytes (%.1f MiB)", st.Size(), float64(st.Size())/(1<<20))
	if st.Size() > maxBinarySize {
		t.Errorf("binary is %d bytes, target < %d", st.Size(), maxBinarySize)
	}
	v := run(t, nil, bin, "version")
	for _, want := range []string{"mxedge 9.9.9-test", "commit abc1234"} {
		if !strings.Contains(v, want) {
			t.Errorf("mxedge version: %q lacks %q", v, want)
		}
	}
}
