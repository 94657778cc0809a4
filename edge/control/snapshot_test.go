package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
)

// TestSnapshot: the names are listed, a copy arrives whole, an unknown name is a 404, a copy cut
// after its size was announced is io.ErrUnexpectedEOF, and a daemon without snapshots says so.
func TestSnapshot(t *testing.T) {
	data := bytes.Repeat([]byte("bbolt page "), 10000)
	whole := func(start func(int64) (io.Writer, error)) (int64, error) {
		w, err := start(int64(len(data)))
		if err != nil {
			return 0, err
		}
		n, err := w.Write(data)
		return int64(n), err
	}
	cut := func(start func(int64) (io.Writer, error)) (int64, error) {
		w, err := start(int64(len(data)))
		if err != nil {
			return 0, err
		}
		n, _ := w.Write(data[:len(data)/3])
		return int64(n), errors.New("disk read error")
	}
	_, c := startServer(t, Options{Snapshots: map[string]SnapshotFunc{"cache.db": whole, "spool.db": cut}}, nil)
	ctx := context.Background()
	names, err := c.SnapshotNames(ctx)
	if err != nil || !slices.Equal(names, []string{"cache.db", "spool.db"}) {
		t.Fatalf("names %q (%v)", names, err)
	}
	var buf bytes.Buffer
	if n, err := c.Snapshot(ctx, "cache.db", &buf); err != nil || n != int64(len(data)) || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("cache.db: %d bytes, %v", n, err)
	}
	if _, err := c.Snapshot(ctx, "spool.db", io.Discard); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a cut copy: %v, want io.ErrUnexpectedEOF", err)
	}
	var re *RemoteError
	if _, err := c.Snapshot(ctx, "../etc/passwd", io.Discard); !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("unknown name: %v", err)
	}

	_, bare := startServer(t, Options{}, nil)
	if _, err := bare.SnapshotNames(ctx); !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Fatalf("no snapshots: %v", err)
	}
}
