package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxedge/edge/config"
)

func TestSessionsBlock(t *testing.T) {
	_, lab := labConfig(t)
	base := "cache: {path: " + filepath.Join(lab.Dir, "c.db") + "}\nclients:\n  - {name: a, address: 192.0.2.1, secret: s}\nupstreams:\n  tls: {certificate: " +
		lab.ClientCert + ", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n  servers:\n    - {name: u, address: 192.0.2.10}\n"
	c, err := config.Parse("m.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	// On by default, beside the cache, with the store's defaults.
	o := c.Built().Sessions
	if o == nil || o.Path != filepath.Join(lab.Dir, "sessions.db") || o.Validate() != nil {
		t.Fatalf("default sessions: %+v", o)
	}
	if o.MaxEntries != 0 || o.StopGrace != 0 { // zero: the store's documented defaults
		t.Fatalf("defaults should be the store's: %+v", o)
	}
	c, err = config.Parse("m.yaml", []byte(base+"sessions:\n  max_entries: 5000\n  stop_grace: 1m\n  missed_interims: 2\n  default_interim: 15m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Built().Sessions; o.MaxEntries != 5000 || o.StopGrace != time.Minute || o.MissedInterims != 2 || o.DefaultInterim != 15*time.Minute {
		t.Fatalf("set: %+v", o)
	}
	if c, err = config.Parse("m.yaml", []byte(base+"sessions:\n  enabled: false\n")); err != nil || c.Built().Sessions != nil {
		t.Fatalf("disabled: %v %+v", err, c.Built().Sessions)
	}
	for _, tt := range []struct{ doc, want string }{
		{"sessions:\n  max_entries: -1\n", "m.yaml:9: sessions.max_entries:"},
		{"sessions:\n  stop_grace: 2d\n", "m.yaml:9: sessions.stop_grace:"},
		{"sessions:\n  missed_interims: 101\n", "m.yaml:9: sessions.missed_interims:"},
		{"sessions:\n  default_interim: 10s\n", "m.yaml:9: sessions.default_interim:"},
		{"sessions:\n  path: /nonexistent/dir/s.db\n", "m.yaml:9: sessions.path: directory /nonexistent/dir"},
		{"sessions:\n  max_sessions: 3\n", `unknown key "max_sessions"`},
	} {
		_, err := config.Parse("m.yaml", []byte(base+tt.doc))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.doc, err, tt.want)
		}
	}
}
