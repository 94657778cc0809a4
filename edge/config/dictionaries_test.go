package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxedge/edge/config"
)

// TestDictionaries: extra dictionary files load on top of the built-in one, relative to the
// configuration file, and a bad one is a configuration error naming the dictionary's file and line.
func TestDictionaries(t *testing.T) {
	base, _ := labConfig(t)
	dir := t.TempDir()
	good := "VENDOR Acme 99999\nBEGIN-VENDOR Acme\nATTRIBUTE Acme-Role 1 string\nEND-VENDOR Acme\n"
	bad := "VENDOR Acme2 99998\nBEGIN-VENDOR Acme2\nATTRIBUTE Tunnel-Private-Group-Id 1 string\nEND-VENDOR Acme2\n"
	for name, text := range map[string]string{"dictionary.acme": good, "dictionary.bad": bad} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Parse(filepath.Join(dir, "mxedge.yaml"), []byte(base+"\ndictionaries: [dictionary.acme]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := c.Built().Dictionary.ByName("Acme-Role"); !ok || a.Vendor != 99999 {
		t.Errorf("Acme-Role = %+v, %v", a, ok)
	}
	c, err = config.Parse(filepath.Join(dir, "mxedge.yaml"), []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Built().Dictionary.Name(0, 81); got != "Tunnel-Private-Group-Id" {
		t.Errorf("without dictionaries: Name(0, 81) = %q", got)
	}
	_, err = config.Parse(filepath.Join(dir, "mxedge.yaml"), []byte(base+"\ndictionaries:\n  - dictionary.acme\n  - dictionary.bad\n"))
	want := filepath.Join(dir, "dictionary.bad") + ":3: attribute Tunnel-Private-Group-Id"
	if err == nil || !strings.Contains(err.Error(), "dictionaries[1]") || !strings.Contains(err.Error(), want) {
		t.Errorf("bad dictionary: %v\nwant dictionaries[1] and %q", err, want)
	}
}
