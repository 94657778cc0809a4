package edge

import (
	"net/netip"

	"mxedge/cache"
	"mxedge/cache/session"
	"mxedge/proxy/dynauth"
)

// sessionTable gives the CoA relay and the reconciler what they ask of the session table: the
// NAS holding a session a request names (dynauth.Sessions), and the sessions admitted locally that
// still need the cloud's re-authorization (dynauth.ReconcileSessions).
type sessionTable struct {
	s *session.Store
	// owned, in a cluster, narrows NeedingReconcile to the sessions this edge reconciles
	// (Edge.ownedReconcile); nil: every session.
	owned func(limit int) ([]session.Record, error)
}

// FindSession looks the session up by Acct-Session-Id, then MAC (Calling-Station-Id), Framed-IP,
// User-Name, in the order of how precisely each names one session, and takes the latest live one.
func (t sessionTable) FindSession(q dynauth.SessionQuery) (dynauth.SessionRef, bool) {
	var qs []session.Query
	if q.AcctSessionID != "" {
		qs = append(qs, session.Query{AcctSessionID: q.AcctSessionID})
	}
	if q.CallingStationID != "" {
		if mac, err := cache.NormalizeMAC(q.CallingStationID); err == nil {
			qs = append(qs, session.Query{MAC: mac})
		}
	}
	if q.FramedIP.IsValid() {
		qs = append(qs, session.Query{IP: q.FramedIP})
	}
	if q.UserName != "" {
		qs = append(qs, session.Query{UserName: q.UserName})
	}
	for _, sq := range qs {
		rs, err := t.s.Find(sq)
		if err != nil {
			continue
		}
		for i := len(rs) - 1; i >= 0; i-- {
			if rs[i].State.Live() {
				r := &rs[i]
				addr, _ := netip.ParseAddr(r.NASAddr)
				return dynauth.SessionRef{NAS: r.NAS, NASAddr: addr, AcctSessionID: r.AcctSessionID,
					CallingStationID: r.CallingStationID, UserName: r.UserName, FramedIP: r.FramedIP}, true
			}
		}
	}
	return dynauth.SessionRef{}, false
}

// NeedingReconcile lists the sessions to re-authorize, oldest first, as targets the NAS finds
// them by (RFC 5176 §3: Acct-Session-Id, User-Name, Calling-Station-Id, Framed-IP-Address).
func (t sessionTable) NeedingReconcile(limit int) ([]dynauth.ReconcileItem, error) {
	read := t.s.NeedingReconcile
	if t.owned != nil {
		read = t.owned
	}
	rs, err := read(limit)
	if err != nil {
		return nil, err
	}
	out := make([]dynauth.ReconcileItem, 0, len(rs))
	for _, r := range rs {
		addr, _ := netip.ParseAddr(r.NASAddr)
		out = append(out, dynauth.ReconcileItem{ID: r.ID, Site: r.Site, Target: dynauth.Target{
			NAS: r.NAS, NASAddr: addr, AcctSessionID: r.AcctSessionID, UserName: r.UserName,
			CallingStationID: r.CallingStationID, FramedIP: r.FramedIP}})
	}
	return out, nil
}

// MarkReconciled records the outcome in the table.
func (t sessionTable) MarkReconciled(id uint64, ok bool) error { return t.s.MarkReconciled(id, ok) }

// sessionLookup is the session table as the CoA relay's lookup, or nil when the edge keeps none.
func (e *Edge) sessionLookup() dynauth.Sessions {
	if e.sessions == nil {
		return nil
	}
	return sessionTable{s: e.sessions}
}
