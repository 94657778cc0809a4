package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mxedge/edge/identity"
	"mxedge/pki"
)

// IdentityFile configures identity push (docs/identity.md): connection-state events of every
// session with an address, to identity services and firewalls.
type IdentityFile struct {
	// User is where the event's user comes from: user-name (default), identity (the User-Name
	// of the Access-Accept) or cui (Chargeable-User-Identity).
	User string `yaml:"user"`
	// MissingDomain is sent as the domain when neither the user nor an alias gives one.
	// Default missing-domain-secureconnect.
	MissingDomain string `yaml:"missing_domain"`
	// Domains are aliases for users who give no realm; an SSID's wins over its site's.
	Domains IdentityDomainsFile `yaml:"domains"`
	// SessionTimeout ends a session without accounting for this long (a disconnect, reason
	// expired). Default 24h; 1m..30d.
	SessionTimeout Duration `yaml:"session_timeout"`
	// QueueDir holds one queue file per sink. Default: identity/ next to the cache.
	QueueDir   string             `yaml:"queue_dir"`
	BackoffMin Duration           `yaml:"backoff_min"` // default 1s
	BackoffMax Duration           `yaml:"backoff_max"` // default 1m
	Sinks      []IdentitySinkFile `yaml:"sinks"`
}

// IdentityDomainsFile maps sites and SSIDs to domains.
type IdentityDomainsFile struct {
	Sites map[string]string `yaml:"sites"`
	SSIDs map[string]string `yaml:"ssids"`
}

// IdentitySinkFile is one destination.
type IdentitySinkFile struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // https | syslog | radius-accounting
	// Sites, SSIDs and Methods (mab, eap, eap-tls, eap-peap, eap-ttls, eap-fast, pap, chap; eap
	// is any EAP method) select the sessions it gets; empty: all.
	Sites    []string `yaml:"sites"`
	SSIDs    []string `yaml:"ssids"`
	Methods  []string `yaml:"methods"`
	MaxQueue int      `yaml:"max_queue"` // default 100000
	Batch    int      `yaml:"batch"`     // default 100, at most 1000
	Timeout  Duration `yaml:"timeout"`   // one delivery attempt, default 10s
	// https
	URL       string          `yaml:"url"`
	TokenFile string          `yaml:"token_file"` // bearer token, first line
	TLS       IdentityTLSFile `yaml:"tls"`
	// syslog
	Address   string `yaml:"address"`   // host:port (syslog, radius-accounting)
	Transport string `yaml:"transport"` // udp | tcp | tls, default udp
	Facility  string `yaml:"facility"`  // name (authpriv, local0, …) or 0..23, default authpriv
	Hostname  string `yaml:"hostname"`  // default the system's
	// radius-accounting
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
}

// IdentityTLSFile is the TLS material of an https or syslog-over-TLS sink. The server is always
// verified: against CA, else the system roots.
type IdentityTLSFile struct {
	CA                string `yaml:"ca"`
	Certificate       string `yaml:"certificate"` // client certificate (mutual TLS)
	Key               string `yaml:"key"`
	KeyPassphraseFile string `yaml:"key_passphrase_file"`
	ServerName        string `yaml:"server_name"` // default the URL's or address's host
}

// Identity is the built identity push configuration; nil in Built without sinks.
type Identity struct {
	Options        identity.Options
	SessionTimeout time.Duration
}

var facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
	"ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

func (c *Config) buildIdentity(v *validator, b *Built) {
	f := &c.File.Identity
	if len(f.Sinks) == 0 {
		return
	}
	o := identity.Options{UserSource: f.User, BackoffMin: f.BackoffMin.D(0), BackoffMax: f.BackoffMax.D(0),
		Domains: identity.Domains{Sites: f.Domains.Sites, SSIDs: f.Domains.SSIDs, Missing: f.MissingDomain}}
	if f.User != "" && !slices.Contains(identity.UserSources, f.User) {
		v.errorf("identity.user", "%q is not one of %s", f.User, strings.Join(identity.UserSources, ", "))
	}
	o.Dir = c.abs(f.QueueDir)
	if o.Dir == "" {
		o.Dir = filepath.Join(filepath.Dir(b.Cache.Path), "identity")
	}
	st := f.SessionTimeout.D(identity.DefaultSessionTimeout)
	if st < time.Minute || st > 30*24*time.Hour {
		v.errorf("identity.session_timeout", "%v is outside 1m..30d", st)
	}
	if o.BackoffMax > 0 && o.BackoffMin > o.BackoffMax {
		v.errorf("identity.backoff_min", "%v is above backoff_max %v", o.BackoffMin, o.BackoffMax)
	}
	sites := map[string]bool{}
	for _, cl := range b.Clients {
		sites[cl.Site] = true
	}
	if b.Listener != nil {
		for _, p := range b.Listener.Peers {
			sites[p.Site] = true
		}
	}
	for s := range f.Domains.Sites {
		if !sites[s] {
			v.errorf("identity.domains.sites", "%q is no client's site", s)
		}
	}
	names := map[string]bool{}
	for i, sf := range f.Sinks {
		path := fmt.Sprintf("identity.sinks[%d]", i)
		if sf.Name == "" {
			v.errorf(path+".name", "required")
		} else if names[sf.Name] {
			v.errorf(path+".name", "%q is used by another sink", sf.Name)
		}
		names[sf.Name] = true
		so := identity.SinkOptions{Name: sf.Name, Type: sf.Type, MaxQueue: sf.MaxQueue, Batch: sf.Batch, Timeout: sf.Timeout.D(0),
			Filter: identity.Filter{Sites: sf.Sites, SSIDs: sf.SSIDs, Methods: sf.Methods}}
		for j, s := range sf.Sites {
			if !sites[s] {
				v.errorf(fmt.Sprintf("%s.sites[%d]", path, j), "%q is no client's site", s)
			}
		}
		for j, m := range sf.Methods {
			if !slices.Contains(identity.Methods, m) {
				v.errorf(fmt.Sprintf("%s.methods[%d]", path, j), "%q is not one of %s", m, strings.Join(identity.Methods, ", "))
			}
		}
		if sf.MaxQueue < 0 {
			v.errorf(path+".max_queue", "must not be negative")
		}
		if sf.Batch < 0 || sf.Batch > 1000 {
			v.errorf(path+".batch", "%d is outside 1..1000", sf.Batch)
		}
		switch sf.Type {
		case identity.TypeHTTPS:
			u, err := url.Parse(sf.URL)
			switch {
			case sf.URL == "":
				v.errorf(path+".url", "required")
			case err != nil:
				v.errorf(path+".url", "%v", err)
			case u.Scheme != "https":
				v.errorf(path+".url", "%q: must be https (the server is always verified)", sf.URL)
			case u.Host == "":
				v.errorf(path+".url", "%q has no host", sf.URL)
			}
			ho := &identity.HTTPSOptions{URL: sf.URL, TokenFile: c.abs(sf.TokenFile), TLS: c.identityTLS(v, path+".tls", sf.TLS)}
			if sf.TokenFile != "" {
				if data, err := os.ReadFile(ho.TokenFile); err != nil {
					v.errorf(path+".token_file", "%v", err)
				} else if strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]) == "" {
					v.errorf(path+".token_file", "%s is empty", sf.TokenFile)
				}
			}
			so.HTTPS = ho
		case identity.TypeSyslog:
			tr := sf.Transport
			if tr == "" {
				tr = "udp"
			}
			if tr != "udp" && tr != "tcp" && tr != "tls" {
				v.errorf(path+".transport", "%q is not one of udp, tcp, tls", sf.Transport)
			}
			checkHostPort(v, path+".address", sf.Address)
			so.Syslog = &identity.SyslogOptions{Address: sf.Address, Transport: tr, Hostname: sf.Hostname, Facility: identity.DefaultFacility}
			if sf.Facility != "" {
				if n, err := strconv.Atoi(sf.Facility); err == nil && n >= 0 && n <= 23 {
					so.Syslog.Facility = n
				} else if i := slices.Index(facilities, sf.Facility); i >= 0 {
					so.Syslog.Facility = i
				} else {
					v.errorf(path+".facility", "%q is not a facility name (authpriv, local0, …) or 0..23", sf.Facility)
				}
			}
			if tr == "tls" {
				so.Syslog.TLS = c.identityTLS(v, path+".tls", sf.TLS)
			} else if sf.TLS != (IdentityTLSFile{}) {
				v.errorf(path+".tls", "only for transport tls")
			}
		case identity.TypeAccounting:
			checkHostPort(v, path+".address", sf.Address)
			so.Accounting = &identity.AccountingOptions{Address: sf.Address, Secret: c.secret(v, path, sf.Secret, sf.SecretFile, "")}
		case "":
			v.errorf(path+".type", "required: https, syslog or radius-accounting")
			continue
		default:
			v.errorf(path+".type", "%q is not one of https, syslog, radius-accounting", sf.Type)
			continue
		}
		o.Sinks = append(o.Sinks, so)
	}
	b.Identity = &Identity{Options: o, SessionTimeout: st}
}

func checkHostPort(v *validator, path, a string) {
	if a == "" {
		v.errorf(path, "required (host:port)")
		return
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		v.errorf(path, "%q is not host:port", a)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf(path, "%q: port must be 1..65535", a)
	}
}

// identityTLS loads a sink's CA (else the system roots) and optional client certificate.
func (c *Config) identityTLS(v *validator, path string, t IdentityTLSFile) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		certs, err := pki.LoadCertificates(c.abs(t.CA))
		if err != nil {
			v.errorf(path+".ca", "%v", err)
		} else {
			pool := x509.NewCertPool()
			for _, ca := range certs {
				if time.Now().After(ca.NotAfter) {
					v.errorf(path+".ca", "%s: %q expired on %s", t.CA, ca.Subject.CommonName, ca.NotAfter.Format(time.DateOnly))
				}
				pool.AddCert(ca)
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case t.Certificate == "" && t.Key == "":
	case t.Certificate == "":
		v.errorf(path+".certificate", "required with key")
	case t.Key == "":
		v.errorf(path+".key", "required with certificate")
	default:
		password, ok := c.keyPassphrase(v, path, t.KeyPassphraseFile)
		if !ok {
			break
		}
		pair, err := pki.LoadKeyPairWithPassword(c.abs(t.Certificate), c.abs(t.Key), password)
		switch {
		case err != nil:
			v.errorf(path+".certificate", "%v", err)
		case pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter):
			v.errorf(path+".certificate", "%s expired on %s", t.Certificate, pair.Leaf.NotAfter.Format(time.DateOnly))
		default:
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg
}
