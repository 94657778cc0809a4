package config

import (
	"os"
	"path/filepath"

	"mxedge/cache/session"
)

// SessionsFile configures the session table (docs/sessions.md).
type SessionsFile struct {
	Enabled        *bool    `yaml:"enabled"`         // default true
	Path           string   `yaml:"path"`            // default sessions.db beside the cache
	MaxEntries     int      `yaml:"max_entries"`     // 1..10000000, default 200000
	StopGrace      Duration `yaml:"stop_grace"`      // 1s..24h, default 5m: how long a stopped session is kept
	MissedInterims int      `yaml:"missed_interims"` // 1..100, default 3: silent interim intervals before a live session expires
	DefaultInterim Duration `yaml:"default_interim"` // 1m..24h, default 30m: when the NAS sends no Acct-Interim-Interval
}

// buildSessions turns the sessions block into the store's options (nil when disabled).
func (c *Config) buildSessions(v *validator, b *Built) {
	f := &c.File.Sessions
	if !boolOr(f.Enabled, true) {
		return
	}
	o := session.Options{Path: c.abs(f.Path), MaxEntries: f.MaxEntries, StopGrace: f.StopGrace.D(0),
		MissedInterims: f.MissedInterims, DefaultInterim: f.DefaultInterim.D(0)}
	if o.Path == "" {
		// Next to the cache: both belong to the state directory.
		o.Path = filepath.Join(filepath.Dir(b.Cache.Path), "sessions.db")
	}
	// Each field is checked alone against the store's own ranges, so the error names its line.
	for _, f := range []struct {
		field string
		o     session.Options
	}{
		{"sessions.max_entries", session.Options{MaxEntries: o.MaxEntries}},
		{"sessions.stop_grace", session.Options{StopGrace: o.StopGrace}},
		{"sessions.missed_interims", session.Options{MissedInterims: o.MissedInterims}},
		{"sessions.default_interim", session.Options{DefaultInterim: o.DefaultInterim}},
	} {
		if err := f.o.Validate(); err != nil {
			v.errorf(f.field, "%v", err)
			return
		}
	}
	if f.Path != "" {
		if st, err := os.Stat(filepath.Dir(o.Path)); err != nil || !st.IsDir() {
			v.errorf("sessions.path", "directory %s does not exist", filepath.Dir(o.Path))
			return
		}
	}
	b.Sessions = &o
}
