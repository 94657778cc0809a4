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
	RADIUS  string `json:"radius"` // "1.1" (RFC 9765) or "1.0"; empty from a daemon that predates it
}

func (t tlsView) String() string {
	s := fmt.Sprintf("%s, %s, %s", orDash(t.Version), orDash(t.Cipher), orDash(t.Group))
	if t.Hybrid {
		s += " (post-quantum hybrid)"
	}
	if t.RADIUS != "" {
		s += ", RADIUS/" + t.RADIUS
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

// tlsDoc is one connection's TLS parameters in mxedge.status.v1 (docs/output.md).
type tlsDoc struct {
	Version string `json:"version"` // "TLS 1.3"
	Cipher  string `json:"cipher"`
	Group   string `json:"group"` // key exchange, e.g. "X25519MLKEM768"
	Hybrid  bool   `json:"post_quantum_hybrid"`
	RADIUS  string `json:"radius_version"` // "1.1" when ALPN negotiated radius/1.1 (RFC 9765), else "1.0"
}

type radsecConnDoc struct {
	NAS  string `json:"nas"`
	Peer string `json:"peer"`
	TLS  tlsDoc `json:"tls"`
}

type realmDoc struct {
	Realm       string   `json:"realm"`
	State       string   `json:"state"`
	Address     string   `json:"address"`
	Answered    uint64   `json:"answered"`
	IdleSeconds float64  `json:"idle_seconds"`
	TLS         []tlsDoc `json:"tls"`
}

func toTLSDoc(t tlsView) tlsDoc {
	return tlsDoc(t)
}

func tlsDocs(ts []tlsView) []tlsDoc {
	out := make([]tlsDoc, 0, len(ts))
	for _, t := range ts {
		out = append(out, toTLSDoc(t))
	}
	return out
}

// radsecDocs maps the listener's connections and the discovered realms (empty arrays, never null).
func radsecDocs(st statusView) ([]radsecConnDoc, []realmDoc) {
	conns, realms := make([]radsecConnDoc, 0, len(st.RadSec)), make([]realmDoc, 0, len(st.Realms))
	for _, c := range st.RadSec {
		conns = append(conns, radsecConnDoc{NAS: c.NAS, Peer: c.Peer, TLS: toTLSDoc(c.TLS)})
	}
	for _, r := range st.Realms {
		realms = append(realms, realmDoc{Realm: r.Realm, State: string(r.Upstream.State), Address: r.Upstream.Addr,
			Answered: r.Upstream.Answered, IdleSeconds: seconds(r.Idle), TLS: tlsDocs(r.Upstream.TLS)})
	}
	return conns, realms
}
