package survivability

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"mxedge/cache"
	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// maxSiteVLAN is the longest VLAN name a RADIUS attribute carries (RFC 2865 §5).
const maxSiteVLAN = 253

// Site is the survivability policy of one site (docs/survivability.md, "Per-site policy"): every
// NAS client belongs to a site (proxy.Client.Site), and its requests are decided under its site's
// policy while the cloud is unreachable.
type Site struct {
	Name string
	// Enabled: local decisions for the site's NASes. Off, their Access-Requests get the
	// no-upstream outcome (NoUpstreamDrop in Sites); their accounting is still spooled.
	Enabled bool
	// CachingPeriod is how long an entry learned from one of the site's NASes is served after its
	// last Access-Accept (1 to 30 days). Zero: the cache's own TTL alone decides.
	CachingPeriod time.Duration
	// DefaultMABVLAN and DefaultDot1XVLAN are the VLAN ID or name for MAB and 802.1X clients not in
	// the cache, rendered per NAS vendor (DefaultVLANAttrs). Empty: accept without a VLAN.
	DefaultMABVLAN   string
	DefaultDot1XVLAN string
	// FailClosed rejects clients not in the cache instead of giving them the default VLAN.
	FailClosed bool
	// Password is the policy for password logins (PAP, CHAP) that are not MAB.
	Password PasswordPolicy
	// Accounts are the local device-admin accounts checked under PasswordLocal.
	Accounts *Accounts
}

// Validate checks a site's values.
func (s *Site) Validate() error {
	for name, v := range map[string]string{"default MAB VLAN": s.DefaultMABVLAN, "default 802.1X VLAN": s.DefaultDot1XVLAN} {
		if len(v) > maxSiteVLAN {
			return fmt.Errorf("survivability: site %q: %s longer than %d octets", s.Name, name, maxSiteVLAN)
		}
	}
	if s.CachingPeriod != 0 && (s.CachingPeriod < cache.MinTTL || s.CachingPeriod > cache.MaxTTL) {
		return fmt.Errorf("survivability: site %q: caching period %v outside 1..30 days", s.Name, s.CachingPeriod)
	}
	if s.Password == PasswordLocal && s.Accounts == nil {
		return fmt.Errorf("survivability: site %q: local password logins without accounts", s.Name)
	}
	return nil
}

// SiteTable is every configured site and the default for NASes of sites not listed.
type SiteTable struct {
	Default Site
	Sites   map[string]Site
	// NoUpstreamDrop: Access-Requests of a disabled site get no answer (the no_upstream: drop
	// policy) instead of an Access-Reject.
	NoUpstreamDrop bool
}

// Validate checks every site.
func (t *SiteTable) Validate() error {
	errs := []error{t.Default.Validate()}
	for _, s := range t.Sites {
		errs = append(errs, s.Validate())
	}
	return errors.Join(errs...)
}

// Sites holds the current SiteTable; a reload swaps it atomically, so a request is decided under
// one whole table, old or new.
type Sites struct {
	t atomic.Pointer[SiteTable]
}

// NewSites returns Sites holding t, which must be valid.
func NewSites(t SiteTable) (*Sites, error) {
	s := new(Sites)
	return s, s.Set(t)
}

// Set replaces the table; an invalid one is refused and the current one kept.
func (s *Sites) Set(t SiteTable) error {
	if err := t.Validate(); err != nil {
		return err
	}
	s.t.Store(&t)
	return nil
}

// table is the current table; nil Sites is one default site: enabled, without default VLANs,
// rejecting password logins (the engine's behaviour before sites existed).
func (s *Sites) table() *SiteTable {
	if s != nil {
		if t := s.t.Load(); t != nil {
			return t
		}
	}
	return &SiteTable{Default: Site{Enabled: true}}
}

// For returns the policy of the named site, the default for a site not listed.
func (s *Sites) For(name string) Site {
	t := s.table()
	if site, ok := t.Sites[name]; ok {
		return site
	}
	return t.Default
}

// NoUpstreamDrop reports whether a disabled site's Access-Requests go unanswered.
func (s *Sites) NoUpstreamDrop() bool { return s.table().NoUpstreamDrop }

// Fresh reports whether rec is within the caching period of the site it was learned from at now.
// A record without LastAuthorized (imported without one) is left to its stored expiry.
func (s *Sites) Fresh(rec cache.Record, now time.Time) bool {
	p := s.For(rec.Site).CachingPeriod
	return p == 0 || rec.LastAuthorized.IsZero() || rec.LastAuthorized.Add(p).After(now)
}

// site is the policy req is decided under: its NAS's site (Sites.For; nil Sites is one enabled
// site rejecting password logins).
func (e *Engine) site(req *proxy.Request) Site {
	return e.opts.Sites.For(req.Client.Site)
}

// siteDisabled answers an Access-Request of a site whose survivability is off as if there were no
// survivability: the no-upstream outcome (an Access-Reject, or no answer under no_upstream: drop).
func (e *Engine) siteDisabled(req *proxy.Request, c Classification) (packet.Packet, error) {
	ev := Event{Method: methodName(c, req.Packet), MAC: c.MAC, Identity: c.UserName, Reason: ReasonSiteDisabled}
	if e.opts.Sites.NoUpstreamDrop() {
		ev.Reason = ReasonSiteDisabledNoAnswer
		e.event(req, ev)
		return nil, nil
	}
	e.event(req, ev)
	return e.reject(req, "")
}
