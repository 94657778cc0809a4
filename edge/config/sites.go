package config

import (
	"fmt"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/survivability"
)

// DefaultPasswordLogins is the outage policy for password logins when the file names none: a
// switch falls back to its local accounts only when RADIUS does not answer (docs/decisions.md).
const DefaultPasswordLogins = survivability.PasswordNoAnswer

// buildSites builds the per-site survivability policy (docs/survivability.md, "Per-site policy"):
// the survivability block is the default site, each sites[] entry overrides what it sets. It also
// checks that every NAS client and RadSec peer names a listed site once any is listed, and makes
// the cache keep entries for the longest caching period in use.
func (c *Config) buildSites(v *validator, b *Built, s *Survival) {
	f := &c.File.Survivability
	def := survivability.Site{Enabled: s.Enabled, DefaultMABVLAN: f.DefaultMABVLAN, DefaultDot1XVLAN: f.DefaultDot1XVLAN,
		FailClosed: s.FailClosed, CachingPeriod: f.CachingPeriod.D(b.Cache.TTL), Password: DefaultPasswordLogins}
	if f.CachingPeriod != 0 {
		checkCachingPeriod(v, "survivability.caching_period", def.CachingPeriod)
	}
	if f.PasswordLogins != "" {
		def.Password = c.passwordPolicy(v, "survivability.password_logins", f.PasswordLogins)
	}
	accounts := map[string]*survivability.Accounts{} // one load per file
	def.Accounts = c.accounts(v, "survivability.local_accounts", f.LocalAccounts, accounts)
	if def.Password == survivability.PasswordLocal && f.LocalAccounts == "" {
		v.errorf("survivability.local_accounts", "required with password_logins: local")
	}
	t := survivability.SiteTable{Default: def, Sites: map[string]survivability.Site{},
		NoUpstreamDrop: b.Router.NoUpstream == proxy.NoUpstreamDrop}
	longest := def.CachingPeriod
	anyEnabled := def.Enabled
	for i, sf := range f.Sites {
		path := fmt.Sprintf("survivability.sites[%d]", i)
		site := def
		site.Name = sf.Name
		switch _, dup := t.Sites[sf.Name]; {
		case sf.Name == "":
			v.errorf(path+".name", "required")
		case dup:
			v.errorf(path+".name", "%q is listed twice", sf.Name)
		}
		site.Enabled = boolOr(sf.Enabled, def.Enabled)
		site.CachingPeriod = sf.CachingPeriod.D(def.CachingPeriod)
		checkCachingPeriod(v, path+".caching_period", site.CachingPeriod)
		if sf.DefaultMABVLAN != nil {
			site.DefaultMABVLAN = *sf.DefaultMABVLAN
			checkVLAN(v, path+".default_mab_vlan", site.DefaultMABVLAN)
		}
		if sf.DefaultDot1XVLAN != nil {
			site.DefaultDot1XVLAN = *sf.DefaultDot1XVLAN
			checkVLAN(v, path+".default_dot1x_vlan", site.DefaultDot1XVLAN)
		}
		switch sf.Failmode {
		case "":
		case "open":
			site.FailClosed = false
		case "closed":
			site.FailClosed = true
		default:
			v.errorf(path+".failmode", "%q is not open or closed", sf.Failmode)
		}
		if sf.PasswordLogins != "" {
			site.Password = c.passwordPolicy(v, path+".password_logins", sf.PasswordLogins)
		}
		if sf.LocalAccounts != "" {
			site.Accounts = c.accounts(v, path+".local_accounts", sf.LocalAccounts, accounts)
		} else if site.Password == survivability.PasswordLocal && def.Password != survivability.PasswordLocal {
			v.errorf(path+".local_accounts", "required with password_logins: local")
		}
		t.Sites[sf.Name] = site
		longest = max(longest, site.CachingPeriod)
		anyEnabled = anyEnabled || site.Enabled
	}
	if len(f.Sites) > 0 {
		// A typo in a client's site would silently give it the default policy: with sites listed,
		// every client must name one of them (docs/decisions.md).
		for i, cf := range c.File.Clients {
			if _, ok := t.Sites[cf.Site]; !ok {
				v.errorf(fmt.Sprintf("clients[%d].site", i), "%q is not in survivability.sites", cf.Site)
			}
		}
		for i, p := range c.File.RadSec.Peers {
			if _, ok := t.Sites[p.Site]; !ok {
				v.errorf(fmt.Sprintf("radsec.peers[%d].site", i), "%q is not in survivability.sites", p.Site)
			}
		}
	}
	if len(v.errs) == 0 {
		if err := t.Validate(); err != nil {
			v.errorf("survivability", "%v", err)
		}
	}
	s.Sites = t
	s.Enabled = anyEnabled
	// The store keeps every entry for the longest period; survivability.Authorizer skips those a
	// shorter site period has retired.
	b.Cache.TTL = max(b.Cache.TTL, longest)
}

func checkCachingPeriod(v *validator, path string, d time.Duration) {
	if d < cache.MinTTL || d > cache.MaxTTL {
		v.errorf(path, "%v is outside 1d..30d (write 7d)", d)
	}
}

func (c *Config) passwordPolicy(v *validator, path, s string) survivability.PasswordPolicy {
	p, err := survivability.ParsePasswordPolicy(s)
	if err != nil {
		v.errorf(path, "%q is not one of no-answer, reject, local", s)
	}
	return p
}

// accounts loads the local accounts file (once per file) named at path.
func (c *Config) accounts(v *validator, path, file string, loaded map[string]*survivability.Accounts) *survivability.Accounts {
	if file == "" {
		return nil
	}
	abs := c.abs(file)
	if a, ok := loaded[abs]; ok {
		return a
	}
	a, err := survivability.LoadAccounts(abs)
	if err != nil {
		v.errorf(path, "%v", err)
		return nil
	}
	loaded[abs] = a
	return a
}
