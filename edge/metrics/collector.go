package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Modes are the survivability modes, exported as one gauge per mode so a dashboard can show the
// current one and alert on "down".
var Modes = []string{"up", "suspect", "down", "recovering"}

// UpstreamStates are the upstream connection states of mxedge_upstream_state.
var UpstreamStates = []string{"connecting", "up", "down"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

// The metrics read from a Snapshot. docs/metrics.md documents each; a test keeps the two in step.
var (
	descMode        = desc("mode", "1 for the current survivability mode, 0 for the others.", "mode")
	descTransitions = desc("mode_transitions_total", "Survivability mode changes by target mode; to=\"down\" counts failovers to local decisions.", "to")

	descReceived     = desc("requests_received_total", "RADIUS requests received from NAS devices (UDP datagrams and RadSec frames), valid or not.")
	descForwarded    = desc("requests_forwarded_total", "Requests sent to a RadSec upstream.")
	descAnswered     = desc("requests_upstream_answered_total", "Forwarded requests an upstream answered (Status-Server probes are not requests).")
	descFallback     = desc("requests_local_total", "Requests handed to survivability: taken while the cloud is unreachable, or that no upstream answered.")
	descNoUpstream   = desc("requests_no_upstream_total", "Forwarded requests no upstream could answer (no connection, or it died); survivability, or without it the no-upstream policy, answered them.")
	descRetried      = desc("requests_retried_total", "Requests re-sent to another upstream after the connection carrying them died.")
	descStatusServer = desc("status_server_requests_total", "Status-Server requests (RFC 5997) from NAS devices, answered by mxedge itself.")
	descDupEvicted   = desc("duplicate_cache_evictions_total", "Duplicate-cache entries pushed out by newer requests before duplicate_window was over (duplicate_cache_size too small for the rate).")
	descDropped      = desc("dropped_packets_total", "Datagrams and requests dropped without an answer, by reason.", "reason")
	descAnswerTime   = desc("answer_duration_seconds", "Time from receiving a request from a NAS to handing its answer to the socket, by request kind (access, accounting).", "request")

	descDecisions = desc("access_decisions_total", "Access-Accepts and Access-Rejects by code, authentication method and decider (cloud, cache, default, policy), counted where each decision is made.", "code", "method", "decider")
	descLocal     = desc("local_decisions_total", "Access decisions survivability made while the cloud NAC was unreachable, by method, reason and code.", "method", "reason", "code")
	descLocalAcct = desc("local_accounting_requests_total", "Accounting-Requests survivability handled while the cloud NAC was unreachable, by result (spooled is acknowledged; the others are not, so the NAS keeps the record).", "result")

	descNASReq      = desc("nas_requests_total", "Requests received per NAS client.", "nas")
	descNASResp     = desc("nas_responses_total", "Responses sent per NAS client.", "nas")
	descNASRetrans  = desc("nas_retransmissions_total", "Retransmissions per NAS client, absorbed while in flight or answered from the duplicate cache (RFC 5080 §2.2.2).", "nas")
	descNASErr      = desc("nas_errors_total", "Requests per NAS client that were not processed, by reason (bad-authenticator is usually a wrong shared secret).", "nas", "reason")
	descNASLastSeen = desc("nas_last_seen_timestamp_seconds", "Unix time of the last request from the NAS client (absent until it sends one).", "nas")

	descUpState       = desc("upstream_up", "1 when the upstream has a connection carrying requests.", "upstream")
	descUpStateName   = desc("upstream_state", "1 for the upstream's current connection state (connecting, up, down).", "upstream", "state")
	descUpRTT         = desc("upstream_smoothed_rtt_seconds", "Smoothed round-trip time of the upstream's replies, Status-Server probes included.", "upstream")
	descUpReplies     = desc("upstream_replies_total", "Replies received from the upstream: answers to forwarded requests and to Status-Server watchdog probes.", "upstream")
	descUpDowns       = desc("upstream_down_transitions_total", "Times the upstream went down (its last connection failed, or it could not connect).", "upstream")
	descUpConnections = desc("upstream_connections", "Open RadSec connections to the upstream.", "upstream")
	descUpInflight    = desc("upstream_requests_in_flight", "Requests sent to the upstream and not yet answered.", "upstream")

	descCacheSize  = desc("cache_entries", "Clients in the authorization cache (expired or not yet swept).")
	descCacheDrops = desc("cache_write_drops_total", "Cache updates dropped (writer queue full, store closed or read-only).")
	descSpool      = desc("spool_depth", "Accounting records waiting for replay to the cloud.")
	descSpoolFull  = desc("spool_refused_total", "Accounting records refused because the spool was full (not acknowledged, so the NAS keeps them).")
	descSpoolQuar  = desc("spool_quarantined", "Accounting records the replay could never deliver, kept in the spool's quarantine for the operator.")

	descRevFail = desc("revocation_fetch_failures_total", "Failed CRL/OCSP fetches by source; each is also a Warn log line.", "kind", "source")
	descRevOK   = desc("revocation_source_ok", "1 when the CRL/OCSP source's last fetch succeeded.", "kind", "source")

	descEAPConv       = desc("eaptls_conversations", "Local EAP-TLS conversations in progress.")
	descEAPStarted    = desc("eaptls_conversations_started_total", "Local EAP-TLS conversations begun.")
	descEAPChallenges = desc("eaptls_challenges_total", "Access-Challenges sent by local EAP-TLS.")
	descEAPEnded      = desc("eaptls_conversations_ended_total", "Local EAP-TLS conversations finished, by outcome (accept, reject, expired).", "outcome")
	descEAPDiscarded  = desc("eaptls_requests_discarded_total", "EAP requests without a valid Message-Authenticator, silently discarded (RFC 3579 §3.2).")
	descEAPRefused    = desc("eaptls_conversations_refused_total", "New local EAP-TLS conversations refused at the conversation limit.")

	descCertExpiry  = desc("certificate_expiry_timestamp_seconds", "Unix time at which the certificate expires (its notAfter).", "cert")
	descEvDropped   = desc("events_dropped_total", "NAC events a slow subscriber (events --follow) missed; the counters here never depend on events.")
	descDecisionLog = desc("decision_log_lines_total", "Access decision log lines by outcome: written, suppressed (over log.decision_rate or log.reject_rate), dropped (queue full).", "outcome")
	snapshotMetrics = []*prometheus.Desc{descMode, descTransitions, descReceived, descForwarded, descAnswered,
		descFallback, descNoUpstream, descRetried, descStatusServer, descDupEvicted, descDropped, descAnswerTime, descDecisions, descLocal, descLocalAcct,
		descNASReq, descNASResp, descNASRetrans, descNASErr, descNASLastSeen,
		descUpState, descUpStateName, descUpRTT, descUpReplies, descUpDowns, descUpConnections, descUpInflight,
		descCacheSize, descCacheDrops, descSpool, descSpoolFull, descSpoolQuar, descRevFail, descRevOK,
		descEAPConv, descEAPStarted, descEAPChallenges, descEAPEnded, descEAPDiscarded, descEAPRefused,
		descCertExpiry, descEvDropped, descDecisionLog, descRadSecConns, descRadSecRefused}
)

// snapshotCollector turns a Snapshot taken at scrape time into constant metrics.
type snapshotCollector struct{ s *Server }

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append(snapshotMetrics, coaMetrics...) {
		ch <- d
	}
	for _, d := range clusterMetrics {
		ch <- d
	}
	for _, d := range sessionMetrics {
		ch <- d
	}
	for _, d := range identityMetrics {
		ch <- d
	}
	for _, d := range routeMetrics {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.s.opts
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	if o.Certificates != nil {
		seen := map[string]bool{} // a certificate listed twice (one CA for two roles) is one series
		for _, cert := range o.Certificates() {
			if seen[cert.Name] {
				continue
			}
			seen[cert.Name] = true
			gauge(descCertExpiry, float64(cert.NotAfter.Unix()), cert.Name)
		}
	}
	if o.Snapshot == nil {
		return
	}
	s := o.Snapshot()
	for _, m := range Modes {
		gauge(descMode, bool01(m == s.Mode), m)
		counter(descTransitions, s.Transitions[m], m)
	}
	counter(descReceived, s.Requests.Received)
	counter(descForwarded, s.Requests.Forwarded)
	counter(descAnswered, s.Requests.UpstreamAnswered)
	counter(descFallback, s.Requests.Local)
	counter(descNoUpstream, s.Requests.NoUpstream)
	counter(descRetried, s.Requests.Retried)
	counter(descStatusServer, s.Requests.StatusServer)
	counter(descDupEvicted, s.Requests.DuplicateEvicted)
	for _, r := range sortedKeys(s.Dropped) {
		counter(descDropped, s.Dropped[r], r)
	}
	for _, k := range sortedKeys(s.AnswerTime) {
		h := s.AnswerTime[k]
		buckets := make(map[float64]uint64, len(h.Bounds))
		var n uint64
		for i, b := range h.Bounds {
			if i < len(h.Counts) {
				n += h.Counts[i]
			}
			buckets[b] = n
		}
		if len(h.Counts) > len(h.Bounds) {
			n += h.Counts[len(h.Bounds)]
		}
		ch <- prometheus.MustNewConstHistogram(descAnswerTime, n, h.Sum, buckets, k)
	}
	for _, d := range s.Decisions {
		counter(descDecisions, d.Count, d.Code, d.Method, d.Decider)
	}
	for _, d := range s.LocalDecisions {
		counter(descLocal, d.Count, d.Method, d.Reason, d.Code)
	}
	for _, r := range sortedKeys(s.LocalAccounting) {
		counter(descLocalAcct, s.LocalAccounting[r], r)
	}
	for _, n := range s.NAS {
		counter(descNASReq, n.Requests, n.Name)
		counter(descNASResp, n.Responses, n.Name)
		counter(descNASRetrans, n.Duplicates, n.Name)
		counter(descNASErr, n.BadAuthenticator, n.Name, "bad-authenticator")
		counter(descNASErr, n.MissingMA, n.Name, "missing-message-authenticator")
		counter(descNASErr, n.Malformed, n.Name, "malformed")
		if !n.LastSeen.IsZero() {
			gauge(descNASLastSeen, float64(n.LastSeen.UnixNano())/1e9, n.Name)
		}
	}
	collectRadSec(gauge, s.RadSec)
	collectRadSecRefused(counter, s.RadSecRefused)
	for _, u := range s.Upstreams {
		gauge(descUpState, bool01(u.State == "up"), u.Name)
		for _, st := range UpstreamStates {
			gauge(descUpStateName, bool01(st == u.State), u.Name, st)
		}
		gauge(descUpRTT, u.RTT.Seconds(), u.Name)
		counter(descUpReplies, u.Replies, u.Name)
		counter(descUpDowns, u.Downs, u.Name)
		gauge(descUpConnections, float64(u.Connections), u.Name)
		gauge(descUpInflight, float64(u.Inflight), u.Name)
	}
	gauge(descCacheSize, float64(s.Cache.Entries))
	counter(descCacheDrops, s.Cache.Drops)
	gauge(descSpool, float64(s.Spool.Depth))
	counter(descSpoolFull, s.Spool.Refused)
	gauge(descSpoolQuar, float64(s.Spool.Quarantined))
	for _, r := range s.Revocation {
		counter(descRevFail, r.Failures, r.Kind, r.Source)
		gauge(descRevOK, bool01(r.OK), r.Kind, r.Source)
	}
	gauge(descEAPConv, float64(s.EAPTLS.Conversations))
	counter(descEAPStarted, s.EAPTLS.Started)
	counter(descEAPChallenges, s.EAPTLS.Challenges)
	counter(descEAPEnded, s.EAPTLS.Accepted, "accept")
	counter(descEAPEnded, s.EAPTLS.Rejected, "reject")
	counter(descEAPEnded, s.EAPTLS.Expired, "expired")
	counter(descEAPDiscarded, s.EAPTLS.Discarded)
	counter(descEAPRefused, s.EAPTLS.Refused)
	counter(descEvDropped, s.EventsDropped)
	collectCluster(ch, s.Cluster)
	counter(descDecisionLog, s.DecisionLog.Written, "written")
	counter(descDecisionLog, s.DecisionLog.Suppressed, "suppressed")
	counter(descDecisionLog, s.DecisionLog.Dropped, "dropped")
	collectCoA(s.CoA, counter, gauge)
	collectSessions(s.Sessions, gauge, counter)
	collectIdentity(s.Identity, gauge, counter)
	collectRoutes(s.Routes, counter)
	collectFTicks(s.FTicks, counter)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
