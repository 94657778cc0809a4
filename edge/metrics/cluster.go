package metrics

import "github.com/prometheus/client_golang/prometheus"

// Cluster is this edge's view of its cluster (edge/cluster); nil in a Snapshot when alone.
type Cluster struct {
	Members      map[string]int // members by state (alive, suspect), this edge included
	ReachCloud   int            // alive members that reach the cloud, this edge included
	MessagesSent uint64
	BytesSent    uint64
	MessagesRecv uint64
	BytesRecv    uint64
	Merged       uint64
	Conflicts    uint64
	Refused      uint64
	KeyRefused   uint64
	SyncRounds   uint64
	Buckets      uint64
	Events       map[string]uint64 // membership events by type
	LagSeconds   float64           // the last replicated decision's lag
	ViaPeer      map[string]uint64 // WAN via peer: forwarded, answered, failed
	// Sessions is the replication of the session table; nil when sessions are off.
	Sessions *ClusterSessions
}

// ClusterSessions counts session records replicated (docs/cluster.md).
type ClusterSessions struct {
	Sent, Merged, Conflicts, Refused, Dropped uint64
	LagSeconds                                float64 // the last session change's, from its write on a peer to its arrival here
}

var (
	descClMembers   = desc("cluster_members", "Cluster members as this edge sees them, by state.", "state")
	descClCloud     = desc("cluster_members_reaching_cloud", "Alive cluster members (this edge included) that reach the cloud.")
	descClMsgs      = desc("cluster_messages_total", "Replication messages sent and received (gossip, direct and anti-entropy answers).", "direction")
	descClBytes     = desc("cluster_message_bytes_total", "Octets of replication messages sent and received.", "direction")
	descClMerged    = desc("cluster_records_merged_total", "Cache records written from peers.")
	descClConflicts = desc("cluster_merge_conflicts_total", "Records from peers that lost to what this edge held (an older decision, or a forgotten client).")
	descClRefused   = desc("cluster_records_refused_total", "Records from peers not written: expired, invalid, cache full or a stamp too far ahead.")
	descClKey       = desc("cluster_key_refused_total", "Gossip packets no cluster key decrypted: an edge, or anything else, without this cluster's key.")
	descClSync      = desc("cluster_sync_rounds_total", "Anti-entropy digest comparisons.")
	descClBuckets   = desc("cluster_sync_buckets_pulled_total", "Digest buckets found different and pulled from a peer.")
	descClEvents    = desc("cluster_membership_events_total", "Membership changes seen, by type (join, leave, update, suspect, alive).", "type")
	descClLag       = desc("cluster_replication_lag_seconds", "From the last replicated decision on a peer to its merge here.")
	descClViaPeer   = desc("cluster_wan_via_peer_requests_total", "Access-Requests sent through a peer edge while this edge could not reach the cloud, by result (forwarded, answered, failed).", "result")
	descClSessions  = desc("cluster_session_records_total", "Session records replicated: sent to the peers (written here), and from peers merged, lost to this edge's copy (conflict), refused (expired, invalid) or dropped (the session writer's queue full; anti-entropy repairs).", "result")
	descClSessLag   = desc("cluster_session_replication_lag_seconds", "From the last session change written on a peer to its arrival here.")
	clusterMetrics  = []*prometheus.Desc{descClMembers, descClCloud, descClMsgs, descClBytes, descClMerged, descClConflicts,
		descClRefused, descClKey, descClSync, descClBuckets, descClEvents, descClLag, descClViaPeer, descClSessions, descClSessLag}
)

func collectCluster(ch chan<- prometheus.Metric, c *Cluster) {
	if c == nil {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, st := range []string{"alive", "suspect"} {
		gauge(descClMembers, float64(c.Members[st]), st)
	}
	gauge(descClCloud, float64(c.ReachCloud))
	counter(descClMsgs, c.MessagesSent, "sent")
	counter(descClMsgs, c.MessagesRecv, "received")
	counter(descClBytes, c.BytesSent, "sent")
	counter(descClBytes, c.BytesRecv, "received")
	counter(descClMerged, c.Merged)
	counter(descClConflicts, c.Conflicts)
	counter(descClRefused, c.Refused)
	counter(descClKey, c.KeyRefused)
	counter(descClSync, c.SyncRounds)
	counter(descClBuckets, c.Buckets)
	for _, t := range sortedKeys(c.Events) {
		counter(descClEvents, c.Events[t], t)
	}
	gauge(descClLag, c.LagSeconds)
	if c.ViaPeer != nil {
		for _, r := range []string{"forwarded", "answered", "failed"} {
			counter(descClViaPeer, c.ViaPeer[r], r)
		}
	}
	if s := c.Sessions; s != nil {
		counter(descClSessions, s.Sent, "sent")
		counter(descClSessions, s.Merged, "merged")
		counter(descClSessions, s.Conflicts, "conflict")
		counter(descClSessions, s.Refused, "refused")
		counter(descClSessions, s.Dropped, "dropped")
		gauge(descClSessLag, s.LagSeconds)
	}
}
