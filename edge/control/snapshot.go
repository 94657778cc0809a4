package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// SnapshotFunc writes a consistent copy of one bbolt database (cache.Store.WriteSnapshot,
// spool.Spool.WriteSnapshot): start gets the exact size, then the bytes follow.
type SnapshotFunc func(start func(size int64) (io.Writer, error)) (int64, error)

// /v1/snapshots lists the databases the daemon can copy; /v1/snapshot?name=N streams one
// (application/octet-stream, Content-Length the exact size). `mxedge backup` reads them because
// the daemon holds each file's exclusive lock.

func (s *Server) snapshots(w http.ResponseWriter, _ *http.Request) error {
	names := make([]string, 0, len(s.opts.Snapshots))
	for n := range s.opts.Snapshots {
		names = append(names, n)
	}
	slices.Sort(names)
	writeJSON(w, http.StatusOK, names)
	return nil
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	fn, ok := s.opts.Snapshots[name]
	if !ok {
		return statusError(http.StatusNotFound, "control: no database %q to snapshot", name)
	}
	started := false
	_, err := fn(func(size int64) (io.Writer, error) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		started = true
		return w, nil
	})
	if err != nil && started {
		// The header is out: the client sees a body shorter than Content-Length.
		s.log.Warn("snapshot cut short", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: snapshot %s: %w", name, err)
	}
	return nil
}

// SnapshotNames returns the databases the daemon can copy ("cache.db", "spool.db", ...).
func (c *Client) SnapshotNames(ctx context.Context) ([]string, error) {
	var names []string
	if err := c.getJSON(ctx, "/v1/snapshots", nil, &names); err != nil {
		return nil, err
	}
	return names, nil
}

// Snapshot copies the database name into w and returns its size. A stream shorter than announced
// is an error (io.ErrUnexpectedEOF).
func (c *Client) Snapshot(ctx context.Context, name string, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/snapshot", url.Values{"name": {name}}, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength < 0 {
		return 0, fmt.Errorf("control: snapshot %s: no size announced", name)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, c.wrap("/v1/snapshot", err)
	}
	if n != resp.ContentLength {
		return n, fmt.Errorf("control: snapshot %s: %d of %d bytes: %w", name, n, resp.ContentLength, io.ErrUnexpectedEOF)
	}
	return n, nil
}
