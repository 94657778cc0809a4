package control

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// CoARequest is what an operator asks of /v1/coa: an action on the session it names.
type CoARequest struct {
	Action    string `json:"action"` // disconnect, reauthenticate, bounce-port
	NAS       string `json:"nas,omitempty"`
	MAC       string `json:"mac,omitempty"`
	SessionID string `json:"session,omitempty"` // Acct-Session-Id
	User      string `json:"user,omitempty"`
	IP        string `json:"ip,omitempty"` // Framed-IP-Address
}

// CoAResult is the NAS's verdict, the JSON /v1/coa answers.
type CoAResult struct {
	Code       string        `json:"code"`   // the request sent: CoA-Request, Disconnect-Request
	Result     string        `json:"result"` // ack, nak, timeout
	NAS        string        `json:"nas"`
	ErrorCause uint32        `json:"error_cause,omitempty"`
	Dur        time.Duration `json:"dur_ns"`
	// Error says why nothing was sent (no such session or NAS, no action for the vendor).
	Error string `json:"error,omitempty"`
}

// CoABackend sends an operator's CoA or Disconnect (the edge's relay). An error means nothing was
// sent (no such session, no such NAS, no action for the vendor).
type CoABackend func(ctx context.Context, r CoARequest) (CoAResult, error)

func (s *Server) coa(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	req := CoARequest{Action: q.Get("action"), NAS: q.Get("nas"), MAC: q.Get("mac"), SessionID: q.Get("session"),
		User: q.Get("user"), IP: q.Get("ip")}
	switch req.Action {
	case "disconnect", "reauthenticate", "bounce-port":
	default:
		return statusError(http.StatusBadRequest, "control: action %q: want disconnect, reauthenticate or bounce-port", req.Action)
	}
	if req.MAC == "" && req.SessionID == "" && req.User == "" && req.IP == "" {
		return statusError(http.StatusBadRequest, "control: name the session: mac, session, user or ip")
	}
	// Like purge-expired: the header at once, a newline per heartbeat while the NAS is asked
	// (retransmissions can take several seconds), then the result, which carries any error.
	drainSmall(r)
	type answer struct {
		res CoAResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := s.opts.CoA(r.Context(), req)
		done <- answer{res, err}
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case a := <-done:
			if a.err != nil {
				a.res = CoAResult{Error: a.err.Error()}
			}
			_ = json.NewEncoder(w).Encode(a.res)
			return nil
		case <-t.C:
			if _, err := io.WriteString(w, "\n"); err == nil {
				_ = rc.Flush()
			}
		}
	}
}

// CoA asks the daemon to send a CoA or Disconnect for a session and returns the NAS's verdict.
func (c *Client) CoA(ctx context.Context, r CoARequest) (CoAResult, error) {
	q := url.Values{"action": {r.Action}}
	for k, v := range map[string]string{"nas": r.NAS, "mac": r.MAC, "session": r.SessionID, "user": r.User, "ip": r.IP} {
		if v != "" {
			q.Set(k, v)
		}
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/coa", q, nil)
	if err != nil {
		return CoAResult{}, err
	}
	defer resp.Body.Close()
	var out CoAResult
	if err := decodeBody(resp.Body, &out); err != nil {
		return CoAResult{}, c.wrap("/v1/coa", err)
	}
	if out.Error != "" {
		return out, &RemoteError{Message: out.Error}
	}
	return out, nil
}
