package cli

import (
	"strconv"
	"strings"
	"time"
)

// routeView is one route's counter (edge.RouteStatus).
type routeView struct {
	Name    string `json:"name"`
	Matched uint64 `json:"matched"`
}

// routePoolView is a routes' pool (edge.RoutePoolStatus).
type routePoolView struct {
	Name      string         `json:"name"`
	Upstreams []upstreamView `json:"upstreams"`
}

// writeRoutes prints the routes' counters and the state of their pools' servers.
func writeRoutes(p func(string, ...any), st statusView) {
	if len(st.Routes) == 0 {
		return
	}
	var b strings.Builder
	for i, r := range st.Routes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.Name + " " + strconv.FormatUint(r.Matched, 10))
	}
	p("routes\t%s; default %d, loops refused %d\n", b.String(), st.RouteDefault, st.RouteLoops)
	for _, rp := range st.RoutePools {
		for _, u := range rp.Upstreams {
			rtt := "-"
			if u.RTT > 0 {
				rtt = u.RTT.Round(100 * time.Microsecond).String()
			}
			p("  %s/%s: %s since %s, %s, rtt %s, answered %d, failures %d\n", cell(rp.Name), cell(u.Name), u.State,
				formatTime(u.Since), orDash(u.Addr), rtt, u.Answered, u.Failures)
		}
	}
}
