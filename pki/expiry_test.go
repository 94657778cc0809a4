package pki

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

func TestExpiryWarnings(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ca := newRoot(t, KeyECDSAP256)
	mk := func(left time.Duration) NamedCert {
		is := issue(t, ca, IssueOptions{CommonName: left.String(), Usage: UsageServer, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(left)})
		return NamedCert{Name: left.String(), Cert: is.Cert}
	}
	day := 24 * time.Hour
	tests := []struct {
		left      time.Duration
		warn      bool
		threshold time.Duration
		expired   bool
		level     slog.Level
	}{
		{60 * day, false, 0, false, 0},
		{30*day + time.Hour, false, 0, false, 0},
		{30 * day, true, 30 * day, false, slog.LevelInfo},
		{8 * day, true, 30 * day, false, slog.LevelInfo},
		{7 * day, true, 7 * day, false, slog.LevelWarn},
		{2 * day, true, 7 * day, false, slog.LevelWarn},
		{day, true, day, false, slog.LevelError},
		{time.Minute, true, day, false, slog.LevelError},
		{-time.Minute, true, 0, true, slog.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.left.String(), func(t *testing.T) {
			w := ExpiryWarnings([]NamedCert{mk(tt.left)}, now)
			if !tt.warn {
				if len(w) != 0 {
					t.Errorf("unexpected warning %v", w)
				}
				return
			}
			if len(w) != 1 || w[0].Threshold != tt.threshold || w[0].Expired != tt.expired || w[0].Level != tt.level {
				t.Errorf("got %+v", w)
			}
		})
	}
	all := []NamedCert{mk(20 * day), mk(-day), mk(3 * day), mk(90 * day), {Name: "nil"}}
	w := ExpiryWarnings(all, now)
	if len(w) != 3 || !w[0].Expired || w[1].Threshold != 7*day || w[2].Threshold != 30*day {
		t.Errorf("order: %v", w)
	}
	if w[0].String() == "" {
		t.Error("empty message")
	}
}

func TestCheckKeyPairFiles(t *testing.T) {
	ca := newRoot(t, KeyECDSAP256)
	now := time.Now()
	good := issue(t, ca, IssueOptions{CommonName: "good", Usage: UsageServer})
	old := issue(t, ca, IssueOptions{CommonName: "old", Usage: UsageServer, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	dir := t.TempDir()
	write := func(name string, is *Issued) (string, string) {
		c, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		must(t, WriteCertificates(c, false, is.Cert))
		must(t, WriteKey(k, is.Key, false))
		return c, k
	}
	gc, gk := write("good", good)
	oc, ok := write("old", old)
	tests := []struct {
		name      string
		cert, key string
		want      error
	}{
		{"good", gc, gk, nil},
		{"expired", oc, ok, ErrExpired},
		{"mismatch", gc, ok, ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKeyPairFiles(tt.cert, tt.key, now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
}
