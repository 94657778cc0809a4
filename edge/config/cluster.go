package config

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"mxedge/edge/cluster"
)

// ClusterFile configures membership in a cluster of edges (docs/cluster.md). Off unless enabled.
type ClusterFile struct {
	Enabled *bool  `yaml:"enabled"` // default false
	Name    string `yaml:"name"`    // default: the host name
	// Bind is where gossip listens (UDP and TCP); default 0.0.0.0:7946.
	Bind string `yaml:"bind"`
	// Advertise is the address the other edges reach this one on (default: bind, or the host's).
	Advertise string `yaml:"advertise"`
	// Join lists other edges (host:port, port default 7946); each edge may list all of them.
	Join []string `yaml:"join"`
	// KeyFiles hold the cluster keys, base64 of 16, 24 or 32 random octets (`mxedge cluster
	// keygen`); the first encrypts, all decrypt. Required.
	KeyFiles     []string `yaml:"key_files"`
	SyncInterval Duration `yaml:"sync_interval"` // anti-entropy; default 30s
	// WANViaPeer forwards requests to an edge that reaches the cloud when this one does not,
	// before answering locally. Default true. Needs radsec.listen on every edge.
	WANViaPeer *bool `yaml:"wan_via_peer"`
	// TLS is what this edge presents to, and verifies, the other edges' RadSec listeners when it
	// forwards through them: each edge's listener certificate must carry its cluster name.
	// Required with wan_via_peer.
	TLS TLSFile `yaml:"tls"`
}

// Cluster is the cluster configuration turned into options; edge adds the store, clock and views.
type Cluster struct {
	Options    cluster.Options
	WANViaPeer bool
	PeerTLS    *tls.Config // client side of the RadSec connections to peers (WANViaPeer)
}

func (c *Config) buildCluster(v *validator, b *Built) {
	f := &c.File.Cluster
	if f.Enabled == nil || !*f.Enabled {
		return
	}
	cl := &Cluster{WANViaPeer: boolOr(f.WANViaPeer, true)}
	o := &cl.Options
	o.Name = f.Name
	if f.Bind != "" {
		ap, err := parseHostPort(f.Bind, cluster.DefaultPort)
		if err != nil {
			v.errorf("cluster.bind", "%v", err)
		}
		o.Bind = ap
	}
	if f.Advertise != "" {
		ap, err := parseHostPort(f.Advertise, cluster.DefaultPort)
		switch {
		case err != nil:
			v.errorf("cluster.advertise", "%v", err)
		case ap.Addr().IsUnspecified():
			v.errorf("cluster.advertise", "%s is not an address other edges can reach", f.Advertise)
		}
		o.Advertise = ap
	}
	for i, j := range f.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			j = net.JoinHostPort(j, strconv.Itoa(cluster.DefaultPort))
		}
		if _, _, err := net.SplitHostPort(j); err != nil {
			v.errorf(fmt.Sprintf("cluster.join[%d]", i), "%q: want host or host:port", f.Join[i])
			continue
		}
		o.Join = append(o.Join, j)
	}
	if len(f.KeyFiles) == 0 {
		v.errorf("cluster.key_files", "required: cluster traffic is always encrypted (create one with `mxedge cluster keygen`)")
	}
	for i, kf := range f.KeyFiles {
		path := fmt.Sprintf("cluster.key_files[%d]", i)
		k, err := readClusterKey(c.abs(kf))
		if err != nil {
			v.errorf(path, "%v", err)
			continue
		}
		o.Keys = append(o.Keys, k)
	}
	o.SyncInterval = f.SyncInterval.D(0)
	if s := o.SyncInterval; s != 0 && (s < 100e6 || s > 3600e9) {
		v.errorf("cluster.sync_interval", "%v is outside 100ms..1h", s)
	}
	o.TombstoneTTL = b.Cache.TTL
	if cl.WANViaPeer {
		if f.TLS.Certificate == "" || f.TLS.CA == "" {
			v.errorf("cluster.tls", "required with wan_via_peer (the certificate this edge shows the other edges' RadSec listeners, and their CA); or set wan_via_peer: false")
		} else {
			cl.PeerTLS = c.clientTLS(v, "cluster.tls", f.TLS)
		}
		if len(c.File.RadSec.Listen) == 0 {
			v.errorf("cluster.wan_via_peer", "needs radsec.listen: the other edges forward through this edge's RadSec listener")
		}
	}
	b.Cluster = cl
}

// readClusterKey reads a key file: one line of base64 (standard encoding) of 16, 24 or 32 octets,
// readable by its owner only.
func readClusterKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is mode %04o: a cluster key must not be readable by others (chmod 600)", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %v", path, err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%s: the key is %d octets, want 16, 24 or 32", path, len(k))
}

func parseHostPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, defPort), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%q: want an IP address with an optional :port", s)
}
