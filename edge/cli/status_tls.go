package cli

import (
	"fmt"
	"time"
)

// tlsView is what one RadSec connection negotiated (proxy.TLSInfo).
type tlsView struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	Group   string `json:"group"`
	Hybrid  bool   `json:"hybrid"`
}

func (t tlsView) String() string {
	s := fmt.Sprintf("%s, %s, %s", orDash(t.Version), orDash(t.Cipher), orDash(t.Group))
	if t.Hybrid {
		s += " (post-quantum hybrid)"
	}
	return s
}

// peerConnView is one connection of the RadSec listener (proxy.PeerConnStatus).
type peerConnView struct {
	NAS  string  `json:"nas"`
	Peer string  `json:"peer"`
	TLS  tlsView `json:"tls"`
}

// realmView is one realm found by RFC 7585 discovery (proxy.RealmStatus).
type realmView struct {
	Realm    string        `json:"Realm"`
	Upstream upstreamView  `json:"Upstream"`
	Idle     time.Duration `json:"Idle"`
}

// writeConnTLS prints one line per live connection of an upstream.
func writeConnTLS(p func(string, ...any), conns []tlsView) {
	for i, c := range conns {
		p("    conn %d\t%s\n", i+1, c)
	}
}

// writeRadSec prints the listener's connections and the discovered realms.
func writeRadSec(p func(string, ...any), st statusView) {
	for _, c := range st.RadSec {
		p("radsec peer\t%s from %s: %s\n", cell(c.NAS), orDash(c.Peer), c.TLS)
	}
	for _, r := range st.Realms {
		u := r.Upstream
		p("realm\t%s: %s, %s, answered %d, idle %s\n", cell(r.Realm), u.State, orDash(u.Addr), u.Answered, r.Idle.Round(time.Second))
		writeConnTLS(p, u.TLS)
	}
}
