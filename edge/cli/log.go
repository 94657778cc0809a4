package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"

	"mxedge/edge/notify"
)

// NewLogger returns the process logger. Format "auto" writes journald-friendly lines when stderr is
// the journal (JOURNAL_STREAM set by systemd): no timestamp (journald adds one) and a <N> syslog
// priority prefix so `journalctl -p warning` works. Otherwise text with timestamps, or JSON.
// level may be a *slog.LevelVar, which a reload sets (edge.Options.LogLevel).
func NewLogger(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts))
	case "text":
		return slog.New(slog.NewTextHandler(w, opts))
	}
	if notify.UnderJournal() {
		return slog.New(newJournalHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// journalHandler prefixes each text line with its syslog priority and drops the timestamp.
type journalHandler struct {
	mu    *sync.Mutex
	out   io.Writer
	buf   *bytes.Buffer
	inner slog.Handler
}

func newJournalHandler(w io.Writer, opts *slog.HandlerOptions) *journalHandler {
	buf := new(bytes.Buffer)
	o := *opts
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	return &journalHandler{mu: new(sync.Mutex), out: w, buf: buf, inner: slog.NewTextHandler(buf, &o)}
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	prio := "<6>"
	switch {
	case r.Level >= slog.LevelError:
		prio = "<3>"
	case r.Level >= slog.LevelWarn:
		prio = "<4>"
	case r.Level < slog.LevelInfo:
		prio = "<7>"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	h.buf.WriteString(prio)
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.out.Write(h.buf.Bytes())
	return err
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{mu: h.mu, out: h.out, buf: h.buf, inner: h.inner.WithAttrs(as)}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{mu: h.mu, out: h.out, buf: h.buf, inner: h.inner.WithGroup(name)}
}
