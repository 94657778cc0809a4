package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"mxedge/survivability"
)

func TestPasswdHash(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		prefix string
	}{
		{"argon2id", []string{"passwd", "hash"}, "$argon2id$v=19$m=65536,t=3,p=4$"},
		{"bcrypt line", []string{"passwd", "hash", "--bcrypt", "--user", "netadmin"}, "netadmin:$2a$10$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := New(BuildInfo{})
			cmd.SetArgs(tt.args)
			cmd.SetIn(strings.NewReader("switch admin pw\nignored\n"))
			cmd.SetOut(&out)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSuffix(out.String(), "\n")
			if !strings.HasPrefix(line, tt.prefix) || strings.Contains(line, "switch admin pw") {
				t.Fatalf("printed %q, want %s…", line, tt.prefix)
			}
			if !strings.Contains(line, ":") || strings.HasPrefix(line, "$") {
				line = "u:" + line
			}
			a, err := survivability.ParseAccounts(strings.NewReader(line + "\n"))
			if err != nil {
				t.Fatalf("the accounts file does not take it: %v", err)
			}
			user, _, _ := strings.Cut(line, ":")
			if !a.Verify(user, []byte("switch admin pw")) || a.Verify(user, []byte("switch admin pW")) {
				t.Fatal("hash does not verify the password it was made from")
			}
		})
	}
	for _, bad := range []struct {
		in   string
		args []string
	}{{"", []string{"passwd", "hash"}}, {"\n", []string{"passwd", "hash"}}, {"pw\n", []string{"passwd", "hash", "--user", "a:b"}}} {
		cmd := New(BuildInfo{})
		cmd.SetArgs(bad.args)
		cmd.SetIn(strings.NewReader(bad.in))
		cmd.SetOut(new(bytes.Buffer))
		if err := cmd.Execute(); err == nil {
			t.Fatalf("%q %v accepted", bad.in, bad.args)
		} else if bad.args[len(bad.args)-1] == "a:b" && !errors.Is(err, ErrUsage) {
			t.Fatalf("bad user: %v, want a usage error", err)
		}
	}
}
