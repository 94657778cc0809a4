package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mxedge/cache"
)

// DefaultTimeout is how long the client waits for the connection to make
// progress (connect, send, or receive a byte) before giving up.
const DefaultTimeout = 5 * time.Second

// Client errors.
var (
	// ErrNoDaemon: nothing listens on the socket path (the file is missing,
	// or it is a stale socket: ENOENT, ECONNREFUSED). The CLI then opens
	// the database itself.
	ErrNoDaemon = errors.New("control: no mxedge daemon listening")
	// ErrTimeout: the daemon accepted the connection but made no progress
	// for Client.Timeout.
	ErrTimeout = errors.New("control: the mxedge daemon is not answering")
)

const (
	maxErrorBody  = 64 << 10
	maxRecordLine = 1 << 20
)

// Client talks to a daemon's control socket. Its methods are safe for
// concurrent use; it keeps no connection between calls.
type Client struct {
	// Path is the socket path.
	Path string
	// Timeout bounds how long any call waits without progress; 0 means
	// DefaultTimeout. Set it before the first call.
	Timeout time.Duration

	once sync.Once
	hc   *http.Client
}

// Dial returns a client for the socket at path. It does not connect: every
// call does, so a daemon restart between calls is harmless.
func Dial(path string) *Client { return &Client{Path: path} }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) http() *http.Client {
	c.once.Do(func() {
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return c.dial(ctx)
			},
			// A CLI makes a handful of calls: a fresh connection each keeps
			// the liveness timer per call and leaves nothing behind.
			DisableKeepAlives:  true,
			DisableCompression: true,
		}}
	})
	return c.hc
}

// dial connects with the timeout and classifies "nobody there".
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.timeout()}
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w on %s: %w", ErrNoDaemon, c.Path, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: connecting to %s took longer than %v", ErrTimeout, c.Path, c.timeout())
		}
		return nil, fmt.Errorf("control: connect %s: %w", c.Path, err)
	}
	return newIdleConn(conn, c.timeout()), nil
}

// Probe connects and disconnects: nil means a process accepts connections
// on the socket; ErrNoDaemon that none does.
func (c *Client) Probe(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Status returns the daemon's /v1/status document.
func (c *Client) Status(ctx context.Context) (json.RawMessage, error) {
	var v json.RawMessage
	if err := c.getJSON(ctx, "/v1/status", nil, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Cluster returns the daemon's /v1/cluster document.
func (c *Client) Cluster(ctx context.Context) (json.RawMessage, error) {
	var v json.RawMessage
	if err := c.getJSON(ctx, "/v1/cluster", nil, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Identity returns the daemon's /v1/identity document (identity push status).
func (c *Client) Identity(ctx context.Context) (json.RawMessage, error) {
	var v json.RawMessage
	if err := c.getJSON(ctx, "/v1/identity", nil, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// CacheStats returns the daemon's cache statistics.
func (c *Client) CacheStats(ctx context.Context) (cache.Stats, error) {
	var w statsWire
	if err := c.getJSON(ctx, "/v1/cache/stats", nil, &w); err != nil {
		return cache.Stats{}, err
	}
	return statsFromWire(w), nil
}

// CacheList calls fn for each unexpired record in key order, at most limit
// of them (0: all), until fn returns false.
func (c *Client) CacheList(ctx context.Context, limit int, fn func(cache.Record) bool) error {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/cache/list", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(br, maxRecordLine)
		if len(bytes.TrimSpace(line)) > 0 {
			r, derr := DecodeRecord(line)
			if derr != nil {
				return derr
			}
			if !fn(r) {
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.wrap("/v1/cache/list", err)
		}
	}
}

// CacheShow returns the unexpired record of a MAC (any notation) or
// identity; ok is false when there is none.
func (c *Client) CacheShow(ctx context.Context, key string) (cache.Record, bool, error) {
	var w Record
	err := c.getJSON(ctx, "/v1/cache/show", url.Values{"key": {key}}, &w)
	var re *RemoteError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return cache.Record{}, false, nil
	}
	if err != nil {
		return cache.Record{}, false, err
	}
	r, err := RecordFromWire(w)
	if err != nil {
		return cache.Record{}, false, fmt.Errorf("control: show: %w", err)
	}
	return r, true, nil
}

// CacheDelete removes a MAC's record, or every record of an identity, and
// reports whether anything was removed.
func (c *Client) CacheDelete(ctx context.Context, key string) (bool, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/cache/delete", url.Values{"key": {key}}, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var out deleteResult
	if err := decodeBody(resp.Body, &out); err != nil {
		return false, c.wrap("/v1/cache/delete", err)
	}
	return out.Removed, nil
}

// CachePurgeExpired removes every expired record now and returns how many.
func (c *Client) CachePurgeExpired(ctx context.Context) (int, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/cache/purge-expired", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out removedResult
	if err := decodeBody(resp.Body, &out); err != nil {
		return 0, c.wrap("/v1/cache/purge-expired", err)
	}
	if out.Error != "" {
		return out.Removed, &RemoteError{Message: out.Error}
	}
	return out.Removed, nil
}

// CacheExport copies the daemon's JSON Lines export to w.
func (c *Client) CacheExport(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/cache/export", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return c.wrap("/v1/cache/export", err)
	}
	return nil
}

// CacheImport sends JSON Lines to the daemon (at most MaxImportBytes) and
// returns its report. With mergeNewer a record replaces a stored one only if
// it was authorized later. Bad lines are in the report, not the error; on
// an error the report still says what was imported before it.
func (c *Client) CacheImport(ctx context.Context, r io.Reader, mergeNewer bool) (cache.ImportReport, error) {
	q := url.Values{}
	if mergeNewer {
		q.Set("merge", "newer")
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/cache/import", q, io.NopCloser(r))
	var re *RemoteError
	if errors.As(err, &re) && re.report != nil {
		return reportFromWire(*re.report), err
	}
	if err != nil {
		return cache.ImportReport{}, err
	}
	defer resp.Body.Close()
	var out importResult
	if err := decodeBody(resp.Body, &out); err != nil {
		return cache.ImportReport{}, c.wrap("/v1/cache/import", err)
	}
	return reportFromWire(out.reportWire), nil
}

func (c *Client) getJSON(ctx context.Context, endpoint string, q url.Values, v any) error {
	resp, err := c.do(ctx, http.MethodGet, endpoint, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := decodeBody(resp.Body, v); err != nil {
		return c.wrap(endpoint, err)
	}
	return nil
}

// do sends one request. A non-2xx answer becomes a *RemoteError carrying
// the daemon's message.
func (c *Client) do(ctx context.Context, method, endpoint string, q url.Values, body io.Reader) (*http.Response, error) {
	u := "http://mxedge" + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", endpoint, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/jsonl")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, c.wrap(endpoint, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var ew importResult // every error body is {"error"}; import's also has the report
	re := &RemoteError{Status: resp.StatusCode}
	if json.Unmarshal(b, &ew) == nil && ew.Error != "" {
		re.Message = ew.Error
		if endpoint == "/v1/cache/import" {
			re.report = &ew.reportWire
		}
	} else {
		re.Message = fmt.Sprintf("control: %s: %s", endpoint, resp.Status)
	}
	return nil, re
}

// wrap turns transport errors into the package's: the idle timer's
// expiry into ErrTimeout, a missing daemon into ErrNoDaemon (kept from
// dial), anything else prefixed with the endpoint.
func (c *Client) wrap(endpoint string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, ErrNoDaemon), errors.Is(err, ErrTimeout), errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errIdle):
		return fmt.Errorf("%w: nothing moved on %s for %v", ErrTimeout, c.Path, c.timeout())
	}
	return fmt.Errorf("control: %s: %w", endpoint, err)
}

func decodeBody(r io.Reader, v any) error {
	dec := json.NewDecoder(r) // skips the heartbeat newlines
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// readLine reads a line of at most limit octets (longer is an error).
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, isPrefix, err := br.ReadLine()
		line = append(line, frag...)
		if len(line) > limit {
			return nil, fmt.Errorf("control: line longer than %d octets", limit)
		}
		if err != nil || !isPrefix {
			return line, err
		}
	}
}

// errIdle is the read/write error after the idle timer fired.
var errIdle = idleError{}

type idleError struct{}

func (idleError) Error() string   { return "control: connection made no progress" }
func (idleError) Timeout() bool   { return true }
func (idleError) Temporary() bool { return true }

// idleConn closes the door on a daemon that stops answering: a timer, reset
// by every read or write that moves bytes, sets a past deadline when it
// fires, failing the blocked call. One timer covers both directions because
// the HTTP transport reads (waiting for the response) while it writes a long
// import body.
type idleConn struct {
	net.Conn
	d       time.Duration
	timer   *time.Timer
	expired atomic.Bool
}

func newIdleConn(c net.Conn, d time.Duration) *idleConn {
	ic := &idleConn{Conn: c, d: d}
	ic.timer = time.AfterFunc(d, func() {
		ic.expired.Store(true)
		_ = c.SetDeadline(time.Unix(1, 0))
	})
	return ic
}

func (c *idleConn) progress(n int, err error) (int, error) {
	if n > 0 && c.timer.Stop() {
		c.timer.Reset(c.d)
	}
	if err != nil && c.expired.Load() {
		return n, errIdle
	}
	return n, err
}

func (c *idleConn) Read(p []byte) (int, error)  { return c.progress(c.Conn.Read(p)) }
func (c *idleConn) Write(p []byte) (int, error) { return c.progress(c.Conn.Write(p)) }

func (c *idleConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}
