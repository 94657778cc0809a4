package metrics

import "github.com/prometheus/client_golang/prometheus"

// Routes are the request routes' counters (proxy.RouteStats), read at scrape time.
type Routes struct {
	Routes    []Route
	Unmatched uint64 // requests no route matched (the cloud)
	Loops     uint64 // requests refused because they had crossed this edge already
}

// Route is one route's counters.
type Route struct {
	Name   string // the route's name, else "#N", its position from 1
	Target string // its pool's name (default: the cloud), discover or reject
	// Matched: requests the route took. Answers: the target's answers by code (accept, reject,
	// challenge, accounting). NoUpstream: requests none of the target's servers answered.
	// Rejected: Access-Rejects the route made itself. DiscoveryFailed: realms discovery could not
	// resolve.
	Matched, NoUpstream, Rejected, DiscoveryFailed uint64
	Answers                                        map[string]uint64
}

var (
	descRouteRequests  = desc("route_requests_total", "Requests each route took (first match in order), by route and target (a pool, default for the cloud, discover, reject).", "route", "target")
	descRouteAnswers   = desc("route_answers_total", "Answers the route's target gave, by code (accept, reject, challenge, accounting); survivability's local answers for the default pool are not among them.", "route", "target", "code")
	descRouteNoUp      = desc("route_no_upstream_total", "Requests of the route that none of its target's servers answered (no connection, every server down).", "route", "target")
	descRouteRejects   = desc("route_rejects_total", "Access-Rejects a reject route answered itself.", "route", "target")
	descRouteDiscovery = desc("route_discovery_failures_total", "Requests of a discover route whose realm RFC 7585 discovery could not resolve.", "route", "target")
	descRouteUnmatched = desc("route_unmatched_requests_total", "Requests no route matched, sent to the cloud as without routes.")
	descRouteLoops     = desc("route_loops_refused_total", "Requests refused with Access-Reject because they had already crossed this edge (its Proxy-State, or its Operator-Name from a server of its pools).")

	descFTicks = desc("fticks_syslog_lines_total", "F-Ticks lines for eduroam.f_ticks_syslog by outcome: sent, dropped (the sender's queue full), failed (the send failed).", "outcome")

	routeMetrics = []*prometheus.Desc{descRouteRequests, descRouteAnswers, descRouteNoUp, descRouteRejects,
		descRouteDiscovery, descRouteUnmatched, descRouteLoops, descFTicks}
)

// FTicks are the F-Ticks syslog sender's counters (edge/fticks.go).
type FTicks struct{ Sent, Dropped, Failed uint64 }

func collectFTicks(f FTicks, counter func(*prometheus.Desc, uint64, ...string)) {
	counter(descFTicks, f.Sent, "sent")
	counter(descFTicks, f.Dropped, "dropped")
	counter(descFTicks, f.Failed, "failed")
}

// collectRoutes exports r (nothing without routes). Answers should hold every code, zeros
// included, so that each series exists from the first scrape.
func collectRoutes(r *Routes, counter func(*prometheus.Desc, uint64, ...string)) {
	if r == nil {
		return
	}
	for _, rt := range r.Routes {
		counter(descRouteRequests, rt.Matched, rt.Name, rt.Target)
		for _, c := range sortedKeys(rt.Answers) {
			counter(descRouteAnswers, rt.Answers[c], rt.Name, rt.Target, c)
		}
		counter(descRouteNoUp, rt.NoUpstream, rt.Name, rt.Target)
		counter(descRouteRejects, rt.Rejected, rt.Name, rt.Target)
		counter(descRouteDiscovery, rt.DiscoveryFailed, rt.Name, rt.Target)
	}
	counter(descRouteUnmatched, r.Unmatched)
	counter(descRouteLoops, r.Loops)
}
