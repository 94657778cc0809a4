package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"mxedge/edge/events"
)

// MaxRecentEvents bounds n of /v1/events (the bus keeps events.DefaultSize).
const MaxRecentEvents = 10000

// EventSource is the NAC event bus the control socket serves (*events.Bus).
type EventSource interface {
	Recent(n int) []events.Event
	Subscribe(ctx context.Context) <-chan events.Event
}

// NASClient is one NAS client with its counters, the JSON of /v1/clients. BadAuthenticator is the
// count of requests whose Message-Authenticator or accounting authenticator did not verify: almost
// always a wrong shared secret on the NAS or here.
type NASClient struct {
	Name             string    `json:"name"`
	Address          string    `json:"address"` // prefix or radsec peer
	Vendor           string    `json:"vendor,omitempty"`
	Site             string    `json:"site,omitempty"`
	Requests         uint64    `json:"requests"`
	Responses        uint64    `json:"responses"`
	Duplicates       uint64    `json:"duplicates"`
	BadAuthenticator uint64    `json:"bad_authenticator"`
	MissingMA        uint64    `json:"missing_message_authenticator"`
	Malformed        uint64    `json:"malformed"`
	LastSeen         time.Time `json:"last_seen,omitzero"`
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	n := 100
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > MaxRecentEvents {
			return statusError(http.StatusBadRequest, "control: n %q is not a count up to %d", v, MaxRecentEvents)
		}
	}
	follow := false
	switch v := q.Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		return statusError(http.StatusBadRequest, "control: follow %q: want 1 or 0", v)
	}
	// mark=1 asks for a backlog_end line between the ring's events and the live ones, so a
	// client that filters can tell "the last n matches" from what follows.
	mark := q.Get("mark") == "1"
	// Subscribe before reading the ring so nothing published in between is lost (an event may
	// then appear twice: the CLI prints what it gets).
	var live <-chan events.Event
	if follow {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		live = s.opts.Events.Subscribe(ctx)
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if n > 0 {
		for _, ev := range s.opts.Events.Recent(n) {
			if err := enc.Encode(ev); err != nil {
				return nil // the client went away
			}
		}
	}
	if mark {
		if _, err := io.WriteString(w, backlogEndLine+"\n"); err != nil {
			return nil
		}
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if !follow {
		return nil
	}
	// A newline per heartbeat keeps the client's no-progress timer alive while nothing happens.
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case ev, ok := <-live:
			if !ok {
				return nil
			}
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return nil
			}
		case <-t.C:
			if _, err := io.WriteString(w, "\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		}
	}
}

func (s *Server) clients(w http.ResponseWriter, _ *http.Request) error {
	cs := s.opts.Clients()
	if cs == nil {
		cs = []NASClient{}
	}
	writeJSON(w, http.StatusOK, cs)
	return nil
}

// backlogEndLine ends the ring's events on a /v1/events stream asked with mark=1.
const backlogEndLine = `{"backlog_end":true}`

// EventsSplit is Events with the boundary: fn gets live=false for the ring's events and live=true
// for those published after, and backlogEnd (if not nil) runs between them, also when the stream
// is not followed. A daemon older than the boundary marker is an error.
func (c *Client) EventsSplit(ctx context.Context, n int, follow bool, fn func(ev events.Event, live bool) error, backlogEnd func() error) error {
	q := url.Values{"n": {strconv.Itoa(n)}, "mark": {"1"}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	live := false
	for {
		line, err := readLine(br, maxRecordLine)
		switch {
		case len(bytes.TrimSpace(line)) == 0:
		case !live && string(line) == backlogEndLine:
			live = true
			if backlogEnd != nil {
				if ferr := backlogEnd(); ferr != nil {
					return ferr
				}
			}
		default:
			var ev events.Event
			if derr := json.Unmarshal(line, &ev); derr != nil {
				return fmt.Errorf("control: decode event: %w", derr)
			}
			if ferr := fn(ev, live); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			if !live {
				return fmt.Errorf("control: /v1/events: the daemon sent no backlog_end (an older mxedge?)")
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.wrap("/v1/events", err)
		}
	}
}

// Events prints the last n recorded NAC events (oldest first) to fn and, with follow, every new
// one until ctx ends or fn returns an error (which Events returns). A daemon that stops returns
// nil for a followed stream.
func (c *Client) Events(ctx context.Context, n int, follow bool, fn func(events.Event) error) error {
	q := url.Values{"n": {strconv.Itoa(n)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := readLine(br, maxRecordLine)
		if len(bytes.TrimSpace(line)) > 0 {
			var ev events.Event
			if derr := json.Unmarshal(line, &ev); derr != nil {
				return fmt.Errorf("control: decode event: %w", derr)
			}
			if ferr := fn(ev); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.wrap("/v1/events", err)
		}
	}
}

// Clients returns the NAS clients the daemon knows with their counters.
func (c *Client) Clients(ctx context.Context) ([]NASClient, error) {
	var out []NASClient
	if err := c.getJSON(ctx, "/v1/clients", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
