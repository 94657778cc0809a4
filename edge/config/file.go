// Package config owns mxedge's configuration file: one human-edited YAML document, decoded strictly
// (an unknown key is an error), with documented defaults, and every error reported as FILE:LINE:
// field: reason. It turns the file into the option structs of the components; no other package knows
// the file format.
package config

import "time"

// File mirrors the YAML document. Field comments are the reference; docs/configuration.md and
// testdata/mxedge.example.yaml say the same for operators.
type File struct {
	Log             Log          `yaml:"log"`
	Listen          Listen       `yaml:"listen"`
	RequestTimeout  Duration     `yaml:"request_timeout"`  // default 4s
	DuplicateWindow Duration     `yaml:"duplicate_window"` // default 10s
	NoUpstream      string       `yaml:"no_upstream"`      // reject (default) | drop
	Clients         []ClientFile `yaml:"clients"`
	Upstreams       Upstreams    `yaml:"upstreams"`
	RadSec          RadSecFile   `yaml:"radsec"`
	Cache           CacheFile    `yaml:"cache"`
	Survivability   SurvivalFile `yaml:"survivability"`
	Control         ControlFile  `yaml:"control"`
	Metrics         MetricsFile  `yaml:"metrics"`
	// DynamicAuthorization configures CoA and Disconnect relaying (edge/config/dynauth.go).
	DynamicAuthorization DynAuthFile  `yaml:"dynamic_authorization"`
	Sessions             SessionsFile `yaml:"sessions"`
	Cluster              ClusterFile  `yaml:"cluster"`
	Identity             IdentityFile `yaml:"identity"`
	// Dictionaries are extra FreeRADIUS-format dictionary files loaded, in order, on top of the
	// built-in one (proxy/packet/dictionaries): vendor attributes mxedge should name.
	Dictionaries []string `yaml:"dictionaries"`
	// Pools, Routes and Eduroam route requests to upstreams other than `upstreams` (routes.go).
	Pools   []PoolFile   `yaml:"pools"`
	Routes  []RouteFile  `yaml:"routes"`
	Eduroam *EduroamFile `yaml:"eduroam"`

	// DuplicateCacheSize bounds the requests the duplicate cache remembers; default 100000.
	DuplicateCacheSize int `yaml:"duplicate_cache_size"`
	// Discovery finds RadSec servers by realm (RFC 7585, edge/config/discovery.go).
	Discovery DiscoveryFile `yaml:"discovery"`
}

// MetricsFile configures the Prometheus endpoint.
type MetricsFile struct {
	Listen *string `yaml:"listen"` // default 127.0.0.1:9812; "" disables
}

// ControlFile configures the control socket the CLI (mxedge status, cache, …) talks to.
type ControlFile struct {
	Socket string `yaml:"socket"` // default /run/mxedge/control.sock
}

// SurvivalFile configures local decisions while the cloud NAC is unreachable.
type SurvivalFile struct {
	Enabled          *bool      `yaml:"enabled"`            // default true
	DefaultMABVLAN   string     `yaml:"default_mab_vlan"`   // VLAN ID (1-4094) or name for unknown MAB clients
	DefaultDot1XVLAN string     `yaml:"default_dot1x_vlan"` // for unknown 802.1X clients that pass EAP-TLS
	Failmode         string     `yaml:"failmode"`           // open (default): default VLAN; closed: reject
	FailbackProbes   int        `yaml:"failback_probes"`    // default 3
	Spool            SpoolFile  `yaml:"spool"`
	EAPTLS           EAPTLSFile `yaml:"eap_tls"`
	// CachingPeriod is how long an entry learned from a site's NAS is served after its last
	// Access-Accept: 1d..30d, default cache.ttl (7d).
	CachingPeriod Duration `yaml:"caching_period"`
	// PasswordLogins is the outage policy for password logins (PAP, CHAP) that are not MAB:
	// no-answer (default) | reject | local.
	PasswordLogins string `yaml:"password_logins"`
	// LocalAccounts is the file of user:hash lines (argon2id or bcrypt) checked under
	// password_logins: local.
	LocalAccounts string `yaml:"local_accounts"`
	// Sites override the values above for the NAS clients whose site they name; a client of a
	// site not listed gets the values above. With any site listed, every client's site must be.
	Sites []SiteFile `yaml:"sites"`
}

// SiteFile is one site's survivability policy; an unset key takes the survivability block's value.
type SiteFile struct {
	Name             string   `yaml:"name"` // the clients' and RadSec peers' site
	Enabled          *bool    `yaml:"enabled"`
	CachingPeriod    Duration `yaml:"caching_period"`
	DefaultMABVLAN   *string  `yaml:"default_mab_vlan"`   // "" for none
	DefaultDot1XVLAN *string  `yaml:"default_dot1x_vlan"` // "" for none
	Failmode         string   `yaml:"failmode"`
	PasswordLogins   string   `yaml:"password_logins"`
	LocalAccounts    string   `yaml:"local_accounts"`
}

// EAPTLSFile configures the local EAP-TLS server (off while certificate is empty).
type EAPTLSFile struct {
	Certificate       string   `yaml:"certificate"`         // server certificate chain presented to supplicants
	Key               string   `yaml:"key"`                 // plain or passphrase-protected (PKCS#8 or legacy PEM)
	KeyPassphraseFile string   `yaml:"key_passphrase_file"` // file holding the key's passphrase (first line)
	CA                string   `yaml:"ca"`                  // organization CA bundle that signs client certificates
	MinVersion        string   `yaml:"min_version"`         // "1.2" (default) | "1.3"
	FragmentSize      int      `yaml:"fragment_size"`       // default: from Framed-MTU up to 1390, else 1000
	IdentityOrder     []string `yaml:"identity_order"`      // default [cn, upn, email, dns]
	CRLFiles          []string `yaml:"crl_files"`           // local CRLs (PEM or DER)
	OCSP              bool     `yaml:"ocsp"`                // query the certificates' OCSP responders
	Revocation        string   `yaml:"revocation"`          // soft-fail (default) | hard-fail
}

// SpoolFile configures the accounting spool.
type SpoolFile struct {
	Path       string `yaml:"path"`        // default: spool.db next to the cache
	MaxRecords int    `yaml:"max_records"` // default 1000000
	MaxBytes   string `yaml:"max_bytes"`   // default 512MiB
}

// CacheFile configures the persistent cache of authorized clients (site survivability).
type CacheFile struct {
	Path       string   `yaml:"path"`        // default /var/lib/mxedge/cache.db
	TTL        Duration `yaml:"ttl"`         // 1d..30d, default 7d
	MaxEntries int      `yaml:"max_entries"` // default 1000000
	Protect    Duration `yaml:"protect"`     // 1m..ttl, default 1d: entries confirmed this recently are never evicted
}

// Log selects logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error; applied on reload
	Format string `yaml:"format"` // auto (default: journald-friendly under systemd) | text | json
	// Decisions is the access decision log (edge/decisionlog), one info line per decision:
	// on (default) | off | rejects. DecisionRate and RejectRate are its lines per second for
	// accepts and for rejects (default 100 each, 1..100000); the rest is counted and summarized.
	Decisions    string `yaml:"decisions"`
	DecisionRate int    `yaml:"decision_rate"`
	RejectRate   int    `yaml:"reject_rate"`
}

// Listen lists the UDP addresses of the RADIUS front door.
type Listen struct {
	Auth []string `yaml:"auth"` // default ["0.0.0.0:1812", "[::]:1812"]
	Acct []string `yaml:"acct"` // default ["0.0.0.0:1813", "[::]:1813"]
	// Sockets per address (SO_REUSEPORT), each with its own reader; default one per CPU for
	// authentication (all read only while answering locally), 1 for accounting.
	Sockets int `yaml:"sockets"`
	// SplitBatch: a batch of this many datagrams is shared with a second core; default 0, never.
	SplitBatch int `yaml:"split_batch"`
}

// ClientFile is one NAS client.
type ClientFile struct {
	Name                        string `yaml:"name"`
	Address                     string `yaml:"address"` // IP or CIDR
	Secret                      string `yaml:"secret"`
	SecretFile                  string `yaml:"secret_file"`
	Vendor                      string `yaml:"vendor"`
	Site                        string `yaml:"site"`
	RequireMessageAuthenticator *bool  `yaml:"require_message_authenticator"` // default true
	LimitProxyState             *bool  `yaml:"limit_proxy_state"`             // default true
	CoAPort                     int    `yaml:"coa_port"`                      // where the NAS takes CoA/Disconnect; default 3799
}

// TLSFile names certificate material.
type TLSFile struct {
	Certificate       string `yaml:"certificate"`         // PEM chain, leaf first
	Key               string `yaml:"key"`                 // plain or passphrase-protected (PKCS#8 or legacy PEM)
	KeyPassphraseFile string `yaml:"key_passphrase_file"` // file holding the key's passphrase (first line)
	CA                string `yaml:"ca"`                  // PEM bundle that verifies the peer
	MinVersion        string `yaml:"min_version"`         // "1.2" (default) | "1.3"
	RequireHybridKEX  bool   `yaml:"require_hybrid_kex"`  // only post-quantum hybrid key exchange (TLS 1.3)
	RADIUSVersion     string `yaml:"radius_version"`      // allow (default) | off | require: RADIUS/1.1 by ALPN (RFC 9765)
}

// Upstreams configure the RadSec upstreams.
type Upstreams struct {
	Mode           string         `yaml:"mode"` // failover (default) | load-balance
	TLS            TLSFile        `yaml:"tls"`
	Servers        []UpstreamFile `yaml:"servers"`
	DialTimeout    Duration       `yaml:"dial_timeout"`    // default 3s
	DeadAfter      Duration       `yaml:"dead_after"`      // default 2s
	StatusInterval Duration       `yaml:"status_interval"` // default 1s
	StallAfter     Duration       `yaml:"stall_after"`     // default 500ms
	BackoffMin     Duration       `yaml:"backoff_min"`     // default 500ms
	BackoffMax     Duration       `yaml:"backoff_max"`     // default 10s
	MaxConnections int            `yaml:"max_connections"` // default 4
	Source         string         `yaml:"source"`          // local address of every upstream's connections (edge/config/source.go)
	BindDevice     string         `yaml:"bind_device"`     // interface or VRF device (SO_BINDTODEVICE)
	DNS            DNSFile        `yaml:"dns"`
}

// UpstreamFile is one RadSec upstream.
type UpstreamFile struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"` // host[:port], port default 2083
	SRV     bool   `yaml:"srv"`     // resolve _radsec._tcp.host
	// VerifySRVTarget checks the certificate against the SRV target rather than the configured
	// name; only for resolvers that validate DNSSEC (RFC 7585 §3.4).
	VerifySRVTarget bool   `yaml:"verify_srv_target"`
	ServerName      string `yaml:"server_name"`
	Priority        int    `yaml:"priority"`
	Secret          string `yaml:"secret"` // default "radsec"

	Source     string `yaml:"source"`      // overrides upstreams.source
	BindDevice string `yaml:"bind_device"` // overrides upstreams.bind_device
}

// DNSFile configures upstream name resolution.
type DNSFile struct {
	Servers []string `yaml:"servers"` // default: /etc/resolv.conf
	Timeout Duration `yaml:"timeout"` // default 2s
}

// RadSecFile configures the RadSec listener.
type RadSecFile struct {
	Listen             []string     `yaml:"listen"` // e.g. ["0.0.0.0:2083"]; empty: no listener
	TLS                TLSFile      `yaml:"tls"`
	Peers              []RadSecPeer `yaml:"peers"`
	IdleTimeout        Duration     `yaml:"idle_timeout"`             // default 15m
	MaxConnsPerPeer    int          `yaml:"max_connections_per_peer"` // default 8
	MaxInFlightPerPeer int          `yaml:"max_in_flight_per_peer"`   // default 1024
}

// RadSecPeer is one RadSec client of the listener.
type RadSecPeer struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// CertNames is required: names one of which the peer certificate must carry, or ["*"] for any
	// certificate the CA verifies.
	CertNames []string `yaml:"cert_names"`
	Secret    string   `yaml:"secret"` // default "radsec"
	Vendor    string   `yaml:"vendor"`
	// DynamicAuthorization lets the peer send CoA and Disconnect to relay (docs/coa.md).
	DynamicAuthorization bool   `yaml:"dynamic_authorization"`
	Site                 string `yaml:"site"`
}

// Duration is a time.Duration written as "4s", "500ms", "7d" (days are accepted too).
type Duration time.Duration
