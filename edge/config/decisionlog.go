package config

import "mxedge/edge/decisionlog"

// buildDecisionLog reads log.decisions, log.decision_rate and log.reject_rate.
func (c *Config) buildDecisionLog(v *validator, b *Built) {
	f := c.File.Log
	mode, err := decisionlog.ParseMode(f.Decisions)
	if err != nil {
		v.errorf("log.decisions", "%q is not one of on, off, rejects", f.Decisions)
	}
	for _, r := range []struct {
		path string
		n    int
	}{{"log.decision_rate", f.DecisionRate}, {"log.reject_rate", f.RejectRate}} {
		if r.n < 0 || r.n > decisionlog.MaxRate {
			v.errorf(r.path, "%d is outside 1..%d lines per second", r.n, decisionlog.MaxRate)
		}
	}
	b.DecisionLog = decisionlog.Options{Mode: mode, Rate: f.DecisionRate, RejectRate: f.RejectRate}
}
