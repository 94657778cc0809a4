package control

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SessionsSchema names the JSON document of /v1/sessions and `mxedge sessions -o json`.
const SessionsSchema = "mxedge.sessions.v1"

// ErrBadSessionQuery: a /v1/sessions filter could not be understood; answered 400.
var ErrBadSessionQuery = errors.New("control: bad session query")

// SessionQuery filters /v1/sessions; empty fields match anything.
type SessionQuery struct {
	NAS, Site, MAC, User, IP, State string
	Limit                           int // 0: all
}

// SessionList is the /v1/sessions document.
type SessionList struct {
	Schema   string    `json:"schema"`
	Sessions []Session `json:"sessions"`
}

// Session is one session of the table (docs/sessions.md): snake_case keys, units in the names,
// times RFC 3339 in UTC, absent fields omitted.
type Session struct {
	ID                 uint64    `json:"id"`
	State              string    `json:"state"`
	NAS                string    `json:"nas"`
	NASAddress         string    `json:"nas_address,omitempty"`
	Vendor             string    `json:"vendor,omitempty"`
	Site               string    `json:"site,omitempty"`
	NASPort            *uint32   `json:"nas_port,omitempty"`
	NASPortID          string    `json:"nas_port_id,omitempty"`
	CalledStationID    string    `json:"called_station_id,omitempty"`
	SSID               string    `json:"ssid,omitempty"`
	CallingStationID   string    `json:"calling_station_id,omitempty"`
	MAC                string    `json:"mac,omitempty"`
	UserName           string    `json:"user_name,omitempty"`
	Method             string    `json:"method,omitempty"`
	VLAN               string    `json:"vlan,omitempty"`
	ClassHex           string    `json:"class_hex,omitempty"`
	DecidedBy          string    `json:"decided_by"`
	Reconcile          string    `json:"reconcile"`
	ReconcileAttempts  uint32    `json:"reconcile_attempts,omitempty"`
	AcctSessionID      string    `json:"acct_session_id,omitempty"`
	AcctMultiSessionID string    `json:"acct_multi_session_id,omitempty"`
	FramedIP           string    `json:"framed_ip,omitempty"`
	FramedIPv6         string    `json:"framed_ipv6,omitempty"`
	FramedIPv6Prefix   string    `json:"framed_ipv6_prefix,omitempty"`
	InputOctets        uint64    `json:"input_octets"`
	OutputOctets       uint64    `json:"output_octets"`
	SessionTimeSeconds uint32    `json:"session_time_seconds"`
	InterimSeconds     uint32    `json:"interim_interval_seconds,omitempty"`
	TerminateCause     uint32    `json:"terminate_cause,omitempty"`
	AuthorizedAt       time.Time `json:"authorized_at,omitzero"`
	StartedAt          time.Time `json:"started_at,omitzero"`
	UpdatedAt          time.Time `json:"updated_at,omitzero"`
	StoppedAt          time.Time `json:"stopped_at,omitzero"`
	ReconciledAt       time.Time `json:"reconciled_at,omitzero"`
	ExpiresAt          time.Time `json:"expires_at,omitzero"`
	// In a cluster (docs/cluster.md): the edge that created the record, the edge that wrote it
	// last and the edge whose Access-Accept admitted the client.
	Origin     string `json:"origin,omitempty"`
	Edge       string `json:"edge,omitempty"`
	AdmittedBy string `json:"admitted_by,omitempty"`
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	q := SessionQuery{NAS: v.Get("nas"), Site: v.Get("site"), MAC: v.Get("mac"), User: v.Get("user"), IP: v.Get("ip"),
		State: v.Get("state")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return statusError(http.StatusBadRequest, "control: limit %q is not a count", l)
		}
		q.Limit = n
	}
	list, err := s.opts.Sessions(r.Context(), q)
	if errors.Is(err, ErrBadSessionQuery) {
		return statusError(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	if list == nil {
		list = []Session{}
	}
	writeJSON(w, http.StatusOK, SessionList{Schema: SessionsSchema, Sessions: list})
	return nil
}

// Sessions returns the daemon's sessions matching q, oldest first.
func (c *Client) Sessions(ctx context.Context, q SessionQuery) (SessionList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"nas": q.NAS, "site": q.Site, "mac": q.MAC, "user": q.User, "ip": q.IP, "state": q.State} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out SessionList
	err := c.getJSON(ctx, "/v1/sessions", v, &out)
	return out, err
}
