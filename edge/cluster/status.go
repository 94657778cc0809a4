package cluster

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
)

// counters are guarded by Cluster.smu.
type counters struct {
	sent, sentBytes, received, receivedBytes uint64
	merged, conflicts, refused, skewRefused  uint64
	forgets, bad, dropped, tombstonesDropped uint64
	syncRounds, bucketsPulled                uint64
	syncRecordsSent, keyRefused              uint64
	lastMerge                                time.Time
	lastLag, lagSum                          time.Duration
	lagCount                                 uint64
	// Session records: shared from here, received and handed to the table's writer, and when.
	sessionsSent, sessionsReceived uint64
	sessionsSyncSent               uint64
	lastSessionMerge               time.Time
	sessionLastLag, sessionLagSum  time.Duration
	sessionLagCount                uint64
}

// Member is one edge of the cluster as this edge sees it.
type Member struct {
	Name         string
	Addr         string // gossip address
	State        string // alive, suspect, dead, left
	Self         bool
	Site         string
	ReachesCloud bool
	RadSec       string        // its RadSec listener, "" for none
	RTT          time.Duration // of the last direct probe that answered (0: none yet, or this edge)
}

func memberOf(n *memberlist.Node, self string) Member {
	m := Member{Name: n.Name, Addr: n.Address(), State: stateName(n.State), Self: n.Name == self}
	var md meta
	if json.Unmarshal(n.Meta, &md) == nil {
		m.Site, m.ReachesCloud, m.RadSec = md.Site, md.Cloud, md.RadSec
	}
	return m
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// Stats are the replication counters since start.
type Stats struct {
	MessagesSent, BytesSent         uint64 // changes gossiped or sent, and sync answers
	MessagesReceived, BytesReceived uint64
	Merged                          uint64 // records written from peers
	Conflicts                       uint64 // records from peers that lost to what was here (older, forgotten, expired)
	Refused                         uint64 // records from peers not written: expired, invalid, or the cache full
	SkewRefused                     uint64 // stamps too far ahead of this edge's clock
	Forgets                         uint64 // tombstones applied from peers
	Malformed                       uint64 // messages that did not decode
	KeyRefused                      uint64 // packets no cluster key decrypted (an edge with another key)
	Dropped                         uint64 // messages dropped because the worker was behind (repaired by sync)
	TombstonesDropped               uint64
	SyncRounds                      uint64 // digests compared
	BucketsPulled                   uint64 // digest buckets found different and asked for
	SyncRecordsSent                 uint64
	LastMerge                       time.Time
	LastLag, MeanLag                time.Duration // from a decision's stamp to its merge here
	Tombstones                      int
	Sessions                        SessionStats
}

// SessionStats count the replication of session records (zero without Options.Sessions).
type SessionStats struct {
	Sent      uint64 // records this edge wrote, sent to every member
	Received  uint64 // records from peers handed to the table's writer
	Merged    uint64 // written into the table: new here, or newer than its copy
	Conflicts uint64 // not written: the copy here won the merge rule
	Refused   uint64 // not written: expired or invalid
	SyncSent  uint64 // records sent in anti-entropy answers
	LastMerge time.Time
	// LastLag and MeanLag: from a write on a peer (its stamp) to its arrival here.
	LastLag, MeanLag time.Duration
}

// Status is the cluster as this edge sees it.
type Status struct {
	Name    string
	Members []Member // sorted by name, this edge included
	Stats   Stats
}

type peer struct {
	m    Member
	node memberlist.Node // name and address only
}

// Members returns the cluster's members, this edge included, sorted by name.
func (c *Cluster) Members() []Member {
	c.pmu.Lock()
	out := make([]Member, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p.m)
	}
	c.pmu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CloudPeers returns the other alive members that reach the cloud and serve RadSec.
func (c *Cluster) CloudPeers() []Member {
	var out []Member
	for _, m := range c.Members() {
		if !m.Self && m.State == "alive" && m.ReachesCloud && m.RadSec != "" {
			out = append(out, m)
		}
	}
	return out
}

// Status returns the members and the replication counters.
func (c *Cluster) Status() Status {
	c.tmu.Lock()
	tombs := len(c.tombs)
	c.tmu.Unlock()
	c.smu.Lock()
	s := c.stats
	c.smu.Unlock()
	cs := c.opts.Store.Stats() // the live changes' outcomes are counted by the cache's writer
	s.merged += cs.MergeWon
	s.conflicts += cs.MergeLost
	st := Stats{MessagesSent: s.sent, BytesSent: s.sentBytes, MessagesReceived: s.received, BytesReceived: s.receivedBytes,
		Merged: s.merged, Conflicts: s.conflicts, Refused: s.refused, SkewRefused: s.skewRefused, Forgets: s.forgets,
		Malformed: s.bad, Dropped: s.dropped, TombstonesDropped: s.tombstonesDropped, SyncRounds: s.syncRounds,
		BucketsPulled: s.bucketsPulled, SyncRecordsSent: s.syncRecordsSent, KeyRefused: s.keyRefused, LastMerge: s.lastMerge, LastLag: s.lastLag,
		Tombstones: tombs}
	if s.lagCount > 0 {
		st.MeanLag = s.lagSum / time.Duration(s.lagCount)
	}
	st.Sessions = SessionStats{Sent: s.sessionsSent, Received: s.sessionsReceived, SyncSent: s.sessionsSyncSent,
		LastMerge: s.lastSessionMerge, LastLag: s.sessionLastLag}
	if s.sessionLagCount > 0 {
		st.Sessions.MeanLag = s.sessionLagSum / time.Duration(s.sessionLagCount)
	}
	if c.opts.Sessions != nil {
		ss := c.opts.Sessions.Stats()
		st.Sessions.Merged, st.Sessions.Conflicts, st.Sessions.Refused = ss.MergeWon, ss.MergeLost, ss.MergeRefused
	}
	return Status{Name: c.opts.Name, Members: c.Members(), Stats: st}
}

// Name is this member's name in the cluster.
func (c *Cluster) Name() string { return c.opts.Name }
