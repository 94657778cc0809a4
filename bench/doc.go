// Package bench owns mxedge's comparative benchmark: a closed-loop RADIUS/UDP load generator, the
// harness that starts mxedge (the built binary), radsecproxy and the RadSec upstreams (FreeRADIUS
// and a minimal responder process) as separate processes, and the report that compares mxedge with
// radsecproxy measured in the same run against the same upstream.
//
// Every process under test is a child process so that its CPU time can be read from /proc/PID/stat
// alone (proc(5)): the load generator lives in the benchmark process, the minimal responder is the
// test binary re-executed (see ResponderEnv), and mxedge is the static binary `make build` produces.
//
// Absolute figures depend on the machine and on whatever else it runs; the report therefore gives
// ratios between the two proxies measured back to back, and the share of the host's CPU that other
// processes took during each window so that a noisy measurement can be recognised.
package bench
