package metrics

import (
	"maps"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// CoA is the Dynamic Authorization relay's counters (proxy/dynauth.Stats) and reconciliation's
// progress.
type CoA struct {
	Requests        uint64            // CoA/Disconnect requests accepted for relaying
	ACK             uint64            // ACKs sent back
	NAK             map[uint32]uint64 // NAKs sent back by Error-Cause (0: none)
	Timeouts        uint64            // the NAS did not answer the retransmissions
	Retransmissions uint64
	Dropped         map[string]uint64 // by dynauth.DropReason name
	NAS             []CoANAS
	Reconcile       Reconcile
}

// CoANAS is one NAS's dynamic authorization counters.
type CoANAS struct {
	Name                     string
	Requests, ACK, NAK, Lost uint64
}

// Reconcile is reconciliation after an outage.
type Reconcile struct {
	Running                              bool
	Sent, ACK, NAK, Timeouts, Skipped, N uint64 // N: rounds
}

var (
	descCoAReq      = desc("coa_requests_total", "CoA-Request and Disconnect-Request accepted for relaying to a NAS (on-prem clients, the cloud over RadSec, the edge itself).")
	descCoAACK      = desc("coa_acks_total", "CoA-ACK and Disconnect-ACK sent back to whoever asked.")
	descCoANAK      = desc("coa_naks_total", "CoA-NAK and Disconnect-NAK sent back, relayed from the NAS or made by mxedge, by Error-Cause (RFC 5176 §3.6; 0 for none).", "error_cause")
	descCoATimeouts = desc("coa_timeouts_total", "Requests the NAS left unanswered through every retransmission (answered NAK 506).")
	descCoARetrans  = desc("coa_retransmissions_total", "Requests sent to a NAS again for lack of an answer.")
	descCoADropped  = desc("coa_dropped_total", "Dynamic authorization datagrams dropped without an answer, by reason.", "reason")
	descCoANAS      = desc("coa_nas_requests_total", "Requests relayed to each NAS, by result (sent, ack, nak, timeout).", "nas", "result")
	descRecRunning  = desc("reconcile_running", "1 while reconciliation after an outage is re-authorizing sessions.")
	descRecRequests = desc("reconcile_requests_total", "Reconciliation requests by result (sent, ack, nak, timeout, skipped).", "result")
	descRecRounds   = desc("reconcile_rounds_total", "Reconciliation rounds started (one per failback).")
	coaMetrics      = []*prometheus.Desc{descCoAReq, descCoAACK, descCoANAK, descCoATimeouts, descCoARetrans,
		descCoADropped, descCoANAS, descRecRunning, descRecRequests, descRecRounds}
)

func collectCoA(c CoA, counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	counter(descCoAReq, c.Requests)
	counter(descCoAACK, c.ACK)
	for _, cause := range sortedCauses(c.NAK) {
		counter(descCoANAK, c.NAK[cause], strconv.FormatUint(uint64(cause), 10))
	}
	counter(descCoATimeouts, c.Timeouts)
	counter(descCoARetrans, c.Retransmissions)
	for _, r := range sortedKeys(c.Dropped) {
		counter(descCoADropped, c.Dropped[r], r)
	}
	for _, n := range c.NAS {
		counter(descCoANAS, n.Requests, n.Name, "sent")
		counter(descCoANAS, n.ACK, n.Name, "ack")
		counter(descCoANAS, n.NAK, n.Name, "nak")
		counter(descCoANAS, n.Lost, n.Name, "timeout")
	}
	r := c.Reconcile
	running := 0.0
	if r.Running {
		running = 1
	}
	gauge(descRecRunning, running)
	counter(descRecRequests, r.Sent, "sent")
	counter(descRecRequests, r.ACK, "ack")
	counter(descRecRequests, r.NAK, "nak")
	counter(descRecRequests, r.Timeouts, "timeout")
	counter(descRecRequests, r.Skipped, "skipped")
	counter(descRecRounds, r.N)
}

func sortedCauses(m map[uint32]uint64) []uint32 { return slices.Sorted(maps.Keys(m)) }
