package config

import (
	"errors"
	"testing"
)

// TestTypeErrorField: a type error names the key whose value was refused, also among several
// keys of a flow mapping on one line, and says what the key takes.
func TestTypeErrorField(t *testing.T) {
	tests := []struct {
		doc, field, hint string
		line             int
	}{
		{"survivability:\n  failback_probes: three\n", "survivability.failback_probes", "failback_probes must be a whole number", 2},
		{"upstreams:\n  servers:\n    - {name: up, address: a, priority: high, srv: false}\n", "upstreams.servers[0].priority", "priority must be a whole number", 3},
		{"upstreams:\n  servers:\n    - {name: up, address: a, srv: sometimes}\n", "upstreams.servers[0].srv", "srv must be true or false", 3},
		{"listen:\n  auth: 1812\n", "listen.auth", "auth must be a list of strings (write [a, b] or one \"- a\" line each)", 2},
	}
	for _, tt := range tests {
		_, err := Parse("m.yaml", []byte(tt.doc))
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Fatalf("%q: %v", tt.doc, err)
		}
		if e := es[0]; e.Field != tt.field || e.Hint != tt.hint || e.Line != tt.line || e.Column == 0 {
			t.Errorf("%q: %+v, want field %s, hint %q, line %d", tt.doc, *e, tt.field, tt.hint, tt.line)
		}
	}
}
