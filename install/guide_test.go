package install

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallPlacesGuide: the unit's Documentation= names a file that install places (and the .deb
// ships, packaging/build-deb.sh), and uninstall removes it with its directory.
func TestInstallPlacesGuide(t *testing.T) {
	if !strings.Contains(string(Unit), "\nDocumentation=file:"+GuidePath+"\n") {
		t.Fatalf("the unit's Documentation= is not file:%s", GuidePath)
	}
	guide, err := os.ReadFile(filepath.Join("..", "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var out bytes.Buffer
	opts := Options{Root: root, Binary: fakeBinary(t), Guide: guide, Out: &out}
	if err := Install(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, GuidePath)
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, guide) {
		t.Fatalf("guide at %s: %v", GuidePath, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("guide mode %v", fi.Mode().Perm())
	}
	if !strings.Contains(out.String(), "installed "+GuidePath) {
		t.Errorf("install did not say it placed the guide:\n%s", out.String())
	}
	out.Reset()
	if err := Install(context.Background(), opts); err != nil || !strings.Contains(out.String(), "unchanged "+GuidePath) {
		t.Errorf("second install: %v\n%s", err, out.String())
	}
	if err := Uninstall(context.Background(), Options{Root: root, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Errorf("uninstall left %s (%v)", filepath.Dir(GuidePath), err)
	}
}
