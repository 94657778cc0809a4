package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestSessionsEndpoint(t *testing.T) {
	var got SessionQuery
	_, c := startServer(t, Options{Sessions: func(_ context.Context, q SessionQuery) ([]Session, error) {
		got = q
		switch q.MAC {
		case "bad":
			return nil, fmt.Errorf("%w: mac %q: not a MAC address", ErrBadSessionQuery, q.MAC)
		case "none":
			return nil, nil
		}
		return []Session{{ID: 7, State: "active", NAS: "sw1", DecidedBy: "cloud", Reconcile: "none"}}, nil
	}}, nil)
	ctx := context.Background()
	l, err := c.Sessions(ctx, SessionQuery{NAS: "sw1", Site: "HQ", MAC: "02:00:00:00:00:01", User: "u", IP: "10.0.0.1", State: "active", Limit: 3})
	if err != nil || l.Schema != SessionsSchema || len(l.Sessions) != 1 || l.Sessions[0].ID != 7 {
		t.Fatalf("sessions: %+v %v", l, err)
	}
	if want := (SessionQuery{NAS: "sw1", Site: "HQ", MAC: "02:00:00:00:00:01", User: "u", IP: "10.0.0.1", State: "active", Limit: 3}); got != want {
		t.Fatalf("query %+v, want %+v", got, want)
	}
	if l, err := c.Sessions(ctx, SessionQuery{MAC: "none"}); err != nil || l.Sessions == nil || len(l.Sessions) != 0 {
		t.Fatalf("none: %+v %v (want an empty list, not null)", l, err)
	}
	var re *RemoteError
	if _, err := c.Sessions(ctx, SessionQuery{MAC: "bad"}); !errors.As(err, &re) || re.Status != http.StatusBadRequest {
		t.Fatalf("bad query: %v", err)
	}

	_, off := startServer(t, Options{}, nil)
	if _, err := off.Sessions(ctx, SessionQuery{}); !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Fatalf("table off: %v", err)
	}
}
