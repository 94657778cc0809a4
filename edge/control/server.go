package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mxedge/cache"
)

// Server timings.
const (
	// readHeaderTimeout bounds a client that connects and sends nothing.
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
	// shutdownGrace is how long Run lets requests in flight finish on
	// cancel before it closes their connections; it then still waits for
	// the handlers to return.
	shutdownGrace = 5 * time.Second
	// heartbeatInterval paces the newlines a long operation (purge) sends
	// so the client's no-progress timeout (5 s) does not fire.
	heartbeatInterval = time.Second
	maxQueryBody      = 4 << 10
)

// Server is the control socket. Create it with NewServer, bind with Listen
// (or let Run do it) and serve with Run.
type Server struct {
	opts Options
	log  *slog.Logger

	heartbeat time.Duration // heartbeatInterval; tests shorten it
	maxImport int64         // MaxImportBytes; tests shorten it

	running atomic.Bool

	mu       sync.Mutex
	ln       *net.UnixListener
	sock     fs.FileInfo // the bound socket file, to remove only our own on exit
	closing  bool
	handlers sync.WaitGroup
}

// NewServer validates o; it binds nothing.
func NewServer(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	return &Server{opts: o, log: o.Logger, heartbeat: heartbeatInterval, maxImport: MaxImportBytes}, nil
}

// Path is the socket path the server binds.
func (s *Server) Path() string { return s.opts.Path }

// Listen binds the socket so that a bind error surfaces before Run. A
// stale socket file (nothing answers on it) is replaced; a live one gives
// ErrInUse; a file that is not a socket is left alone and is an error.
//
// The socket is bound under a temporary name, given its mode and group, and
// renamed into place, so no client ever sees it with the umask's
// permissions, and a stale file is replaced atomically.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	path := s.opts.Path
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("control: listen %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("control: listen %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			_ = c.Close()
			return fmt.Errorf("%w: %s answers (is another mxedge running?)", ErrInUse, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("control: listen %s: probing the existing socket: %w", path, err)
		}
		s.log.Info("control socket stale, replacing", "file", path)
	}
	tmp := path + tmpSuffix
	_ = os.Remove(tmp) // left by a crash between bind and rename
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("control: listen %s: %w", path, err)
	}
	// Run removes the socket by its final name, and only if it is still ours.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) error {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("control: listen %s: %w", path, err)
	}
	if err := os.Chmod(tmp, s.opts.Mode); err != nil {
		return fail(err)
	}
	s.chgrp(tmp)
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	s.ln, s.sock = ln, fi
	s.log.Info("control socket listening", "file", path)
	return nil
}

// Close releases what Listen bound when Run is never going to serve it (a later start-up step
// failed): the socket is closed and its file removed. Once Run has started, cancel its context
// instead; Close then does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil || s.running.Load() {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	_ = os.Remove(s.opts.Path + tmpSuffix)
	s.removeSocket()
	return err
}

// chgrp gives the socket to the configured group when it exists. Failing
// is not fatal: the daemon still serves root.
func (s *Server) chgrp(path string) {
	if s.opts.Group == "-" {
		return
	}
	g, err := user.LookupGroup(s.opts.Group)
	if err != nil {
		s.log.Debug("control socket group not found, keeping the default group", "reason", s.opts.Group, "err", err)
		return
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return
	}
	if err := os.Chown(path, -1, gid); err != nil {
		s.log.Warn("control socket chown failed", "reason", s.opts.Group, "err", err)
	}
}

// Run serves until ctx is done, then stops accepting, lets requests in
// flight finish (closing their connections after 5 s), waits for every
// handler to return, removes the socket file and returns nil. Request
// contexts are cancelled with ctx, so streams stop early.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("control: run called twice")
	}
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		cancel()
		<-errc
	case serveErr = <-errc: // the listener failed
		_ = srv.Close()
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.handlers.Wait()
	s.removeSocket()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("control: serve %s: %w", s.opts.Path, serveErr)
	}
	s.log.Info("control socket stopped", "file", s.opts.Path)
	return nil
}

// removeSocket unlinks the socket path if it is still the file we bound: a
// newer daemon may have replaced it.
func (s *Server) removeSocket() {
	fi, err := os.Lstat(s.opts.Path)
	if err == nil && os.SameFile(fi, s.sock) {
		_ = os.Remove(s.opts.Path)
	}
}

type route struct {
	method string
	cache  bool // needs Options.Cache
	h      func(http.ResponseWriter, *http.Request) error
	absent string // non-empty: the option this endpoint needs is nil, answered 503
}

func (s *Server) route(path string) (route, bool) {
	switch path {
	case "/v1/status":
		return route{http.MethodGet, false, s.status, ""}, true
	case "/v1/events":
		rt := route{http.MethodGet, false, s.events, ""}
		if s.opts.Events == nil {
			rt.absent = "events"
		}
		return rt, true
	case "/v1/clients":
		rt := route{http.MethodGet, false, s.clients, ""}
		if s.opts.Clients == nil {
			rt.absent = "the NAS client table"
		}
		return rt, true
	case "/v1/coa":
		rt := route{http.MethodPost, false, s.coa, ""}
		if s.opts.CoA == nil {
			rt.absent = "dynamic authorization"
		}
		return rt, true
	case "/v1/sessions":
		rt := route{http.MethodGet, false, s.sessions, ""}
		if s.opts.Sessions == nil {
			rt.absent = "the session table"
		}
		return rt, true
	case "/v1/snapshots", "/v1/snapshot":
		rt := route{http.MethodGet, false, s.snapshots, ""}
		if path == "/v1/snapshot" {
			rt.h = s.snapshot
		}
		if s.opts.Snapshots == nil {
			rt.absent = "database snapshots"
		}
		return rt, true
	case "/v1/cache/stats":
		return route{http.MethodGet, true, s.cacheStats, ""}, true
	case "/v1/cache/list":
		return route{http.MethodGet, true, s.cacheList, ""}, true
	case "/v1/cache/show":
		return route{http.MethodGet, true, s.cacheShow, ""}, true
	case "/v1/cache/delete":
		return route{http.MethodPost, true, s.cacheDelete, ""}, true
	case "/v1/cache/purge-expired":
		return route{http.MethodPost, true, s.cachePurge, ""}, true
	case "/v1/cache/export":
		return route{http.MethodGet, true, s.cacheExport, ""}, true
	case "/v1/cache/import":
		return route{http.MethodPost, true, s.cacheImport, ""}, true
	}
	return route{}, false
}

// httpError is a handler error with its status.
type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func statusError(status int, format string, args ...any) error {
	return &httpError{status, fmt.Errorf(format, args...)}
}

// ServeHTTP routes a request and writes handler errors as {"error": ...}.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, errors.New("control: shutting down"))
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	start := time.Now()
	rt, ok := s.route(r.URL.Path)
	var err error
	switch {
	case !ok:
		err = statusError(http.StatusNotFound, "control: no endpoint %s", r.URL.Path)
	case r.Method != rt.method:
		w.Header().Set("Allow", rt.method)
		err = statusError(http.StatusMethodNotAllowed, "control: %s wants %s, got %s", r.URL.Path, rt.method, r.Method)
	case rt.cache && s.opts.Cache == nil:
		err = statusError(http.StatusServiceUnavailable, "control: the cache is not enabled in this daemon")
	case rt.absent != "":
		err = statusError(http.StatusServiceUnavailable, "control: %s not available in this daemon", rt.absent)
	default:
		err = rt.h(w, r)
	}
	code := http.StatusOK
	if err != nil {
		code = errorStatus(err)
		if code >= 500 {
			s.log.Warn("control request failed", "code", code, "err", err)
		}
		writeError(w, code, err)
	}
	s.log.Debug("control request", "code", code, "dur", time.Since(start))
}

// errorStatus maps an error to its HTTP status.
func errorStatus(err error) int {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, cache.ErrBadMAC), errors.Is(err, cache.ErrBadRecord):
		return http.StatusBadRequest
	case errors.Is(err, cache.ErrReadOnly):
		return http.StatusConflict
	case errors.Is(err, cache.ErrClosed), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorWire{Error: err.Error()})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) error {
	var v any = struct{}{}
	if s.opts.Status != nil {
		v = s.opts.Status()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("control: status: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func (s *Server) cacheStats(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, statsToWire(s.opts.Cache.Stats()))
	return nil
}

func (s *Server) cacheList(w http.ResponseWriter, r *http.Request) error {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return statusError(http.StatusBadRequest, "control: limit %q is not a count", v)
		}
		limit = n
	}
	cw := &streamWriter{ctx: r.Context(), w: w}
	w.Header().Set("Content-Type", "application/jsonl")
	enc := json.NewEncoder(cw)
	enc.SetEscapeHTML(false)
	n := 0
	var werr error
	err := s.opts.Cache.List(func(rec cache.Record) bool {
		if werr = enc.Encode(RecordToWire(rec)); werr != nil {
			return false
		}
		n++
		return limit == 0 || n < limit
	})
	if err == nil {
		err = werr
	}
	return s.endStream(cw, "list", err)
}

// endStream reports a stream's error: as a JSON error while nothing was
// sent, else by aborting the connection so the client sees a truncated
// chunked body (an error), never a short list that looks complete.
func (s *Server) endStream(cw *streamWriter, what string, err error) error {
	if err == nil {
		return nil
	}
	if cw.n == 0 {
		return fmt.Errorf("control: %s: %w", what, err)
	}
	s.log.Warn("control stream aborted", "reason", what, "err", err)
	panic(http.ErrAbortHandler) // net/http's documented way to abort a response; recovered by the server
}

func (s *Server) cacheShow(w http.ResponseWriter, r *http.Request) error {
	key := r.URL.Query().Get("key")
	if key == "" {
		return statusError(http.StatusBadRequest, "control: show needs a key (MAC or identity)")
	}
	// MAC first (any notation), then identity: a non-MAC key skips the
	// MAC step, a MAC-shaped identity resolves through the MAC record.
	rec, ok, err := s.opts.Cache.Lookup(key, key)
	if err != nil {
		return fmt.Errorf("control: show %q: %w", key, err)
	}
	if !ok {
		return statusError(http.StatusNotFound, "no unexpired cache entry for %q", key)
	}
	writeJSON(w, http.StatusOK, RecordToWire(rec))
	return nil
}

func (s *Server) cacheDelete(w http.ResponseWriter, r *http.Request) error {
	drainSmall(r)
	key := r.URL.Query().Get("key")
	if key == "" {
		return statusError(http.StatusBadRequest, "control: delete needs a key (MAC or identity)")
	}
	removed, err := s.opts.Cache.Delete(key)
	if err != nil {
		return fmt.Errorf("control: delete %q: %w", key, err)
	}
	writeJSON(w, http.StatusOK, deleteResult{Removed: removed})
	return nil
}

// cachePurge sends its header at once and a newline per heartbeat while
// the purge runs (it cannot be cancelled and may take a minute on a
// million entries), then the result, which carries any error.
func (s *Server) cachePurge(w http.ResponseWriter, r *http.Request) error {
	drainSmall(r)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.opts.Cache.PurgeExpired()
		done <- result{n, err}
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case res := <-done:
			out := removedResult{Removed: res.n}
			if res.err != nil {
				out.Error = fmt.Sprintf("control: purge: %v", res.err)
				s.log.Warn("control request failed", "err", res.err)
			}
			_ = json.NewEncoder(w).Encode(out)
			return nil
		case <-t.C:
			if _, err := io.WriteString(w, "\n"); err == nil {
				_ = rc.Flush()
			}
		}
	}
}

func (s *Server) cacheExport(w http.ResponseWriter, r *http.Request) error {
	cw := &streamWriter{ctx: r.Context(), w: w}
	w.Header().Set("Content-Type", "application/jsonl")
	return s.endStream(cw, "export", s.opts.Cache.Export(cw))
}

func (s *Server) cacheImport(w http.ResponseWriter, r *http.Request) error {
	merge := false
	switch v := r.URL.Query().Get("merge"); v {
	case "":
	case "newer":
		merge = true
	default:
		return statusError(http.StatusBadRequest, "control: merge %q: only \"newer\" is known", v)
	}
	body := &ctxReader{ctx: r.Context(), r: http.MaxBytesReader(w, r.Body, s.maxImport)}
	rep, err := s.opts.Cache.Import(body, merge)
	out := importResult{reportWire: reportToWire(rep)}
	code := http.StatusOK
	if err != nil {
		// Lines before the failure are committed: report them too.
		code = errorStatus(err)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("body larger than %d bytes, split the file (%d records were committed before the limit)",
				mbe.Limit, rep.Imported)
		}
		out.Error = fmt.Sprintf("control: import: %v", err)
		if code >= 500 {
			s.log.Warn("control request failed", "code", code, "err", err)
		}
	}
	writeJSON(w, code, out)
	return nil
}

// drainSmall reads a little of an unexpected body so the connection stays
// usable; endpoints other than import take no body.
func drainSmall(r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxQueryBody))
}

// streamWriter counts what a stream wrote and stops it when the request is
// cancelled (client gone, or the server shutting down).
type streamWriter struct {
	ctx context.Context
	w   io.Writer
	n   int64
}

func (c *streamWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops an import when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
