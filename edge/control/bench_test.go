package control

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"mxedge/cache"
)

const benchRecords = 100_000

// benchStore fills a store with benchRecords MAB clients through Import.
func benchStore(b *testing.B) *cache.Store {
	b.Helper()
	clk := &fakeClock{t: t0}
	s := openStore(b, clk)
	var in bytes.Buffer
	for i := range benchRecords {
		fmt.Fprintf(&in, `{"mac":"02:00:00:%02x:%02x:%02x","identity":"user%d@example.com","method":"mab","nas":"10.0.0.1","site":"HQ",`+
			`"attrs":[{"type":64,"tag":1,"value":"00000d"},{"type":65,"tag":1,"value":"000006"},{"type":81,"tag":1,"value":"3431"}],`+
			`"last_authorized":"2026-11-22T11:00:00Z"}`+"\n", i>>16&0xff, i>>8&0xff, i&0xff, i)
	}
	rep, err := s.Import(&in, false)
	if err != nil || rep.Imported != benchRecords {
		b.Fatalf("import: %+v, %v", rep, err)
	}
	return s
}

// BenchmarkExport streams the whole cache over the socket (one op = all
// records).
func BenchmarkExport(b *testing.B) {
	s := benchStore(b)
	_, c := startServer(b, Options{Cache: s}, nil)
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := c.CacheExport(context.Background(), io.Discard); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*benchRecords)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkList decodes every record on the client side.
func BenchmarkList(b *testing.B) {
	s := benchStore(b)
	_, c := startServer(b, Options{Cache: s}, nil)
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := c.CacheList(context.Background(), 0, func(cache.Record) bool { return true }); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*benchRecords)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkShow is one request (new connection, lookup, JSON) per op.
func BenchmarkShow(b *testing.B) {
	s := benchStore(b)
	_, c := startServer(b, Options{Cache: s}, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := c.CacheShow(context.Background(), "02:00:00:00:12:34"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkExportDirect is the anchor for BenchmarkExport: Store.Export in
// process, without the socket.
func BenchmarkExportDirect(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := s.Export(io.Discard); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*benchRecords)/time.Since(start).Seconds(), "records/s")
}
