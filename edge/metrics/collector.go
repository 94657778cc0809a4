package metrics

import (
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Modes are the survivability modes, exported as one gauge per mode so a dashboard can show the
// current one and alert on "down".
var Modes = []string{"up", "suspect", "down", "recovering"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

var (
	descMode        = desc("mode", "1 for the current survivability mode, 0 for the others.", "mode")
	descTransitions = desc("mode_transitions_total", "Survivability mode changes by target mode; to=\"down\" counts failovers to local decisions.", "to")
	descReceived    = desc("requests_received_total", "RADIUS requests received from NAS devices.")
	descForwarded   = desc("requests_forwarded_total", "Requests sent to a RadSec upstream.")
	descAnswered    = desc("requests_upstream_answered_total", "Requests an upstream answered.")
	descFallback    = desc("requests_local_total", "Requests handed to survivability (no upstream answered).")
	descDropped     = desc("dropped_packets_total", "Datagrams dropped without an answer, by reason.", "reason")
	descNASReq      = desc("nas_requests_total", "Requests received per NAS client.", "nas")
	descNASResp     = desc("nas_responses_total", "Responses sent per NAS client.", "nas")
	descNASErr      = desc("nas_errors_total", "Requests per NAS client that were not processed, by reason (bad-authenticator is usually a wrong shared secret).", "nas", "reason")
	descUpState     = desc("upstream_up", "1 when the upstream has a connection carrying requests.", "upstream")
	descUpStateName = desc("upstream_state", "1 for the upstream's current connection state (connecting, up, down).", "upstream", "state")
	descUpRTT       = desc("upstream_rtt_seconds", "Smoothed round-trip time of the upstream's answers.", "upstream")
	descUpAnswered  = desc("upstream_answered_total", "Requests the upstream answered.", "upstream")
	descUpFailures  = desc("upstream_failures_total", "Connection failures of the upstream.", "upstream")
	descCacheSize   = desc("cache_entries", "Clients in the authorization cache (expired or not yet swept).")
	descCacheDrops  = desc("cache_write_drops_total", "Cache updates dropped (writer queue full, store closed or read-only).")
	descSpool       = desc("spool_depth", "Accounting records waiting for replay to the cloud.")
	descSpoolFull   = desc("spool_refused_total", "Accounting records refused because the spool was full (not acknowledged, so the NAS keeps them).")
	descSpoolQuar   = desc("spool_quarantined", "Accounting records the replay could never deliver, kept in the spool's quarantine for the operator.")
	descRevFail     = desc("revocation_fetch_failures_total", "Failed CRL/OCSP fetches by source; each is also a Warn log line.", "kind", "source")
	descRevOK       = desc("revocation_source_ok", "1 when the CRL/OCSP source's last fetch succeeded.", "kind", "source")
	descEAPConv     = desc("eaptls_conversations", "Local EAP-TLS conversations in progress.")
	descEAPStarted  = desc("eaptls_handshakes_total", "Local EAP-TLS conversations begun.")
	descEAPResult   = desc("eaptls_results_total", "Local EAP-TLS conversations finished, by outcome.", "outcome")
	descCertDays    = desc("certificate_expiry_days", "Days until the certificate expires (negative: expired).", "cert")
	descEvDropped   = desc("events_dropped_total", "NAC events a slow subscriber (events --follow, this exporter) missed.")
)

// snapshotCollector turns a Snapshot taken at scrape time into constant metrics.
type snapshotCollector struct{ s *Server }

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMode, descTransitions, descReceived, descForwarded, descAnswered,
		descFallback, descDropped, descNASReq, descNASResp, descNASErr, descUpState, descUpStateName, descUpRTT,
		descUpAnswered, descUpFailures, descCacheSize, descCacheDrops, descSpool, descSpoolFull, descSpoolQuar, descRevFail, descRevOK, descEAPConv, descEAPStarted,
		descEAPResult, descCertDays, descEvDropped} {
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
	if o.Events != nil {
		counter(descEvDropped, o.Events.Dropped())
	}
	if o.Certificates != nil {
		now := o.Now()
		seen := map[string]bool{} // a certificate listed twice (one CA for two roles) is one series
		for _, cert := range o.Certificates() {
			if seen[cert.Name] {
				continue
			}
			seen[cert.Name] = true
			days := cert.NotAfter.Sub(now).Hours() / 24
			gauge(descCertDays, math.Floor(days*100)/100, cert.Name)
		}
	}
	if o.Snapshot == nil {
		return
	}
	s := o.Snapshot()
	for _, m := range Modes {
		v := 0.0
		if m == s.Mode {
			v = 1
		}
		gauge(descMode, v, m)
		counter(descTransitions, s.Transitions[m], m)
	}
	counter(descReceived, s.Received)
	counter(descForwarded, s.Forwarded)
	counter(descAnswered, s.Answered)
	counter(descFallback, s.Fallback)
	for _, r := range sortedKeys(s.Dropped) {
		counter(descDropped, s.Dropped[r], r)
	}
	for _, n := range s.NAS {
		counter(descNASReq, n.Requests, n.Name)
		counter(descNASResp, n.Responses, n.Name)
		counter(descNASErr, n.BadAuthenticator, n.Name, "bad-authenticator")
		counter(descNASErr, n.MissingMA, n.Name, "missing-message-authenticator")
		counter(descNASErr, n.Malformed, n.Name, "malformed")
		counter(descNASErr, n.Duplicates, n.Name, "duplicate")
	}
	for _, u := range s.Upstreams {
		up := 0.0
		if u.State == "up" {
			up = 1
		}
		gauge(descUpState, up, u.Name)
		for _, st := range []string{"connecting", "up", "down"} {
			v := 0.0
			if st == u.State {
				v = 1
			}
			gauge(descUpStateName, v, u.Name, st)
		}
		gauge(descUpRTT, u.RTT.Seconds(), u.Name)
		counter(descUpAnswered, u.Answered, u.Name)
		counter(descUpFailures, u.Failures, u.Name)
	}
	gauge(descCacheSize, float64(s.Cache.Entries))
	counter(descCacheDrops, s.Cache.Drops)
	gauge(descSpool, float64(s.SpoolDepth))
	counter(descSpoolFull, s.SpoolRefused)
	gauge(descSpoolQuar, float64(s.SpoolQuarantined))
	for _, r := range s.Revocation {
		counter(descRevFail, r.Failures, r.Kind, r.Source)
		ok := 0.0
		if r.OK {
			ok = 1
		}
		gauge(descRevOK, ok, r.Kind, r.Source)
	}
	gauge(descEAPConv, float64(s.EAPTLS.Conversations))
	counter(descEAPStarted, s.EAPTLS.Started)
	counter(descEAPResult, s.EAPTLS.Accepted, "accept")
	counter(descEAPResult, s.EAPTLS.Rejected, "reject")
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
