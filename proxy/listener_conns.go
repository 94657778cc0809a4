package proxy

import (
	"cmp"
	"net/netip"
	"slices"
)

// PeerConnStatus is one live RadSec connection of the listener, for `mxedge status` and metrics.
type PeerConnStatus struct {
	NAS  string         `json:"nas"`
	Peer netip.AddrPort `json:"peer"`
	TLS  TLSInfo        `json:"tls"`
}

// Conns lists the live RadSec connections, by NAS name then peer address.
func (l *Listener) Conns() []PeerConnStatus {
	l.mu.Lock()
	out := make([]PeerConnStatus, 0, len(l.live))
	for pc := range l.live {
		out = append(out, PeerConnStatus{NAS: pc.client.Name, Peer: pc.src, TLS: pc.state})
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b PeerConnStatus) int {
		return cmp.Or(cmp.Compare(a.NAS, b.NAS), a.Peer.Compare(b.Peer))
	})
	return out
}
