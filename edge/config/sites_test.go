package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mxedge/edge/config"
	"mxedge/survivability"
)

// siteDoc is a valid configuration with two clients at sites hq and lab and survivability as given.
func siteDoc(t *testing.T, survival string) (string, string) {
	t.Helper()
	_, lab := labConfig(t)
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "admins"), []byte("netadmin:"+string(h)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad-admins"), []byte("netadmin:plaintext\n"), 0o600)
	doc := "cache: {path: " + filepath.Join(dir, "c.db") + "}\nclients:\n" +
		"  - {name: a, address: 192.0.2.1, secret: s, site: hq}\n" +
		"  - {name: b, address: 192.0.2.2, secret: s, site: lab}\n" +
		"upstreams:\n  tls: {certificate: " + lab.ClientCert + ", key: " + lab.ClientKey + ", ca: " + lab.CAFile + "}\n" +
		"  servers: [{name: u, address: 192.0.2.10}]\n" + survival
	return doc, dir
}

func TestSites(t *testing.T) {
	doc, dir := siteDoc(t, `survivability:
  default_mab_vlan: "41"
  failmode: open
  caching_period: 10d
  sites:
    - name: hq
      default_mab_vlan: "100"
      default_dot1x_vlan: corp
      caching_period: 21d
      password_logins: local
      local_accounts: admins
    - name: lab
      enabled: false
      default_mab_vlan: ""
      failmode: closed
      password_logins: reject
`)
	path := filepath.Join(dir, "m.yaml")
	os.WriteFile(path, []byte(doc), 0o600)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Built().Survival
	def, hq, lab := s.Sites.Default, s.Sites.Sites["hq"], s.Sites.Sites["lab"]
	const day = 24 * time.Hour
	if !def.Enabled || def.DefaultMABVLAN != "41" || def.CachingPeriod != 10*day || def.Password != survivability.PasswordNoAnswer {
		t.Fatalf("default site %+v", def)
	}
	if !hq.Enabled || hq.DefaultMABVLAN != "100" || hq.DefaultDot1XVLAN != "corp" || hq.CachingPeriod != 21*day ||
		hq.Password != survivability.PasswordLocal || hq.Accounts.Len() != 1 || hq.FailClosed {
		t.Fatalf("hq %+v", hq)
	}
	if lab.Enabled || lab.DefaultMABVLAN != "" || !lab.FailClosed || lab.CachingPeriod != 10*day || lab.Password != survivability.PasswordReject {
		t.Fatalf("lab %+v", lab)
	}
	if !s.Enabled {
		t.Fatal("engine off with sites enabled")
	}
	if c.Built().Cache.TTL != 21*day {
		t.Fatalf("cache keeps entries %v, want the longest caching period 21d", c.Built().Cache.TTL)
	}
}

func TestSitesDefaults(t *testing.T) {
	doc, _ := siteDoc(t, "")
	c, err := config.Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Built().Survival
	if !s.Enabled || len(s.Sites.Sites) != 0 || !s.Sites.Default.Enabled || s.Sites.Default.CachingPeriod != 7*24*time.Hour ||
		s.Sites.Default.Password != config.DefaultPasswordLogins || config.DefaultPasswordLogins != survivability.PasswordNoAnswer {
		t.Fatalf("defaults %+v", s.Sites)
	}
	// Without sites listed, any client site is fine: it gets the default.
	// Disabled globally but on for one site: the engine runs.
	doc2, _ := siteDoc(t, "survivability:\n  enabled: false\n  sites:\n    - {name: hq, enabled: true}\n    - {name: lab}\n")
	c, err = config.Parse("m.yaml", []byte(doc2))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Built().Survival; !s.Enabled || s.Sites.Sites["lab"].Enabled || !s.Sites.Sites["hq"].Enabled {
		t.Fatalf("enabled per site %+v", s.Sites)
	}
}

func TestSitesErrors(t *testing.T) {
	tests := []struct {
		name, survival string
		want           []string
	}{
		{"unknown client site", "survivability:\n  sites:\n    - {name: hq}\n", []string{"m.yaml:4: clients[1].site:", `"lab" is not in survivability.sites`}},
		{"no name", "survivability:\n  sites:\n    - {name: hq}\n    - {name: lab}\n    - {enabled: false}\n", []string{"m.yaml:12: survivability.sites[2].name: required"}},
		{"duplicate", "survivability:\n  sites:\n    - {name: hq}\n    - {name: lab}\n    - {name: hq}\n", []string{"m.yaml:12: survivability.sites[2].name:", "twice"}},
		{"vlan range", "survivability:\n  sites:\n    - name: hq\n      default_dot1x_vlan: \"0\"\n    - {name: lab}\n", []string{"m.yaml:11: survivability.sites[0].default_dot1x_vlan:", "1..4094"}},
		{"vlan name", "survivability:\n  sites:\n    - name: hq\n      default_mab_vlan: \"two words\"\n    - {name: lab}\n", []string{"m.yaml:11: survivability.sites[0].default_mab_vlan:"}},
		{"period", "survivability:\n  sites:\n    - {name: hq}\n    - name: lab\n      caching_period: 31d\n", []string{"m.yaml:12: survivability.sites[1].caching_period:", "1d..30d"}},
		{"global period", "survivability:\n  caching_period: 12h\n", []string{"m.yaml:9: survivability.caching_period:", "1d..30d"}},
		{"failmode", "survivability:\n  sites:\n    - {name: hq, failmode: ajar}\n    - {name: lab}\n", []string{"m.yaml:10: survivability.sites[0].failmode:"}},
		{"policy", "survivability:\n  password_logins: allow\n", []string{"m.yaml:9: survivability.password_logins:", "no-answer, reject, local"}},
		{"site policy", "survivability:\n  sites:\n    - {name: hq}\n    - {name: lab, password_logins: accept}\n", []string{"m.yaml:11: survivability.sites[1].password_logins:"}},
		{"local without accounts", "survivability:\n  password_logins: local\n", []string{"survivability.local_accounts: required"}},
		{"site local without accounts", "survivability:\n  sites:\n    - {name: hq, password_logins: local}\n    - {name: lab}\n", []string{"m.yaml:10: survivability.sites[0].local_accounts: required"}},
		{"missing accounts", "survivability:\n  password_logins: local\n  local_accounts: /nonexistent/admins\n", []string{"m.yaml:10: survivability.local_accounts:", "/nonexistent/admins"}},
		{"bad accounts", "survivability:\n  password_logins: local\n  local_accounts: bad-admins\n", []string{"m.yaml:10: survivability.local_accounts:", "line 1", "not an argon2id or bcrypt hash"}},
		{"unknown key", "survivability:\n  sites:\n    - {name: hq, vlan: 3}\n", []string{"m.yaml:10:", `unknown key "vlan"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, dir := siteDoc(t, tt.survival)
			path := filepath.Join(dir, "m.yaml")
			os.WriteFile(path, []byte(doc), 0o600)
			_, err := config.Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := strings.ReplaceAll(err.Error(), path, "m.yaml")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}
