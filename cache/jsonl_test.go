package cache

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestExportImportRoundTrip(t *testing.T) {
	clk := newFakeClock()
	src := openTestStore(t, clk, nil)
	want := map[string]Record{}
	for i := range 2500 { // more than one List chunk and one import batch
		r := sampleRecord()
		r.MAC = fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
		r.Identity = fmt.Sprintf("user%d@example.com", i)
		r.FirstSeen = clk.Now().Add(-time.Hour)
		r.LastAuthorized = clk.Now()
		r.Expires = clk.Now().Add(DefaultTTL)
		must(t, src.Upsert(r))
		want[r.MAC] = r
	}
	must(t, src.Upsert(Record{Identity: "host.example.com", Method: MethodEAPTLS}))
	var buf bytes.Buffer
	must(t, src.Export(&buf))
	if n := strings.Count(buf.String(), "\n"); n != 2501 {
		t.Fatalf("exported %d lines", n)
	}

	dst := openTestStore(t, clk, nil)
	rep, err := dst.Import(bytes.NewReader(buf.Bytes()), true)
	if err != nil || rep.Imported != 2501 || rep.Bad != 0 || rep.Lines != 2501 {
		t.Fatalf("import %+v, %v", rep, err)
	}
	for mac, w := range want {
		got, ok := mustLookupMAC(t, dst, mac)
		if !ok {
			t.Fatalf("%s missing after import", mac)
		}
		assertRecordEqual(t, got, w)
	}
	if _, ok, _ := dst.LookupIdentity("HOST.example.com"); !ok {
		t.Fatal("identity-only record lost")
	}
	// Importing the same snapshot again with mergeNewer changes nothing.
	rep, err = dst.Import(bytes.NewReader(buf.Bytes()), true)
	if err != nil || rep.Imported != 0 || rep.Older != 2501 {
		t.Fatalf("re-import %+v, %v", rep, err)
	}
}

func TestImportReportsBadLines(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	now := clk.Now().Format(time.RFC3339Nano)
	old := clk.Now().Add(-30 * 24 * time.Hour).Format(time.RFC3339Nano)
	lines := []string{
		/* 1 */ `{"mac":"02:00:00:00:00:01","identity":"a","method":"mab","last_authorized":"` + now + `","attrs":[{"type":81,"tag":1,"value":"3431"}]}`,
		/* 2 */ ``,
		/* 3 */ `{"mac":"not-a-mac","last_authorized":"` + now + `"}`,
		/* 4 */ `{not json`,
		/* 5 */ `{"identity":"b","method":"kerberos","last_authorized":"` + now + `"}`,
		/* 6 */ `{"identity":"c","last_authorized":"` + old + `"}`, // expired
		/* 7 */ `{"identity":"d"}`, // no last_authorized
		/* 8 */ `{"identity":"e","last_authorized":"` + now + `","attrs":[{"type":81,"value":"zz"}]}`,
		/* 9 */ `{"identity":"f","last_authorized":"` + now + `","attrs":[{"type":1,"vendor":9,"value":""}]}`,
		/* 10 */ `{"identity":"g","last_authorized":"` + now + `","attrs":[{"type":79,"value":"0201"}],"future_field":1}`,
		/* 11 */ `{"mac":"0200.0000.0002","last_authorized":"` + now + `"}`,
		/* 12 */ strings.Repeat(" ", maxImportLine+10) + "x",
		/* 13 */ `{"identity":"h","last_authorized":"` + now + `"}`,
	}
	rep, err := s.Import(strings.NewReader(strings.Join(lines, "\n")), false)
	if err != nil {
		t.Fatal(err)
	}
	var badLines []int
	for _, e := range rep.Errors {
		badLines = append(badLines, e.Line)
		if !errors.Is(e, ErrBadRecord) && !errors.Is(e, ErrBadMAC) {
			t.Errorf("line %d: %v does not wrap a sentinel", e.Line, e.Err)
		}
	}
	if fmt.Sprint(badLines) != "[3 4 5 7 8 9 12]" || rep.Bad != 7 || rep.Imported != 4 || rep.Expired != 1 || rep.Lines != 12 {
		t.Fatalf("report %+v (bad lines %v)", rep, badLines)
	}
	// Line 10's EAP-Message is kept as given: attributes are opaque to the cache, and
	// survivability.Replayable decides on replay.
	r, ok, _ := s.LookupIdentity("g")
	if !ok || len(r.Attrs) != 1 {
		t.Fatalf("g: %+v %v", r, ok)
	}
}

func TestImportMergeNewer(t *testing.T) {
	clk := newFakeClock()
	s := openTestStore(t, clk, nil)
	t0 := clk.Now()
	must(t, s.Upsert(Record{MAC: "02:00:00:00:00:01", Site: "local", LastAuthorized: t0, FirstSeen: t0.Add(-time.Hour)}))
	clk.Advance(time.Hour) // the newer line is then in the past: a future one is clamped to now
	line := func(site string, at time.Time) string {
		return fmt.Sprintf(`{"mac":"02:00:00:00:00:01","site":%q,"last_authorized":%q,"first_seen":%q}`+"\n",
			site, at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	}
	tests := []struct {
		name       string
		in         string
		mergeNewer bool
		wantSite   string
	}{
		{"older loses", line("cloud-old", t0.Add(-time.Minute)), true, "local"},
		{"same loses", line("cloud-same", t0), true, "local"},
		{"newer wins", line("cloud-new", t0.Add(time.Minute)), true, "cloud-new"},
		{"overwrite", line("forced", t0.Add(-time.Hour)), false, "forced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Import(strings.NewReader(tt.in), tt.mergeNewer); err != nil {
				t.Fatal(err)
			}
			r, _ := mustLookupMAC(t, s, "02:00:00:00:00:01")
			if r.Site != tt.wantSite {
				t.Fatalf("site %q, want %q", r.Site, tt.wantSite)
			}
			if !r.FirstSeen.Equal(t0.Add(-time.Hour)) {
				t.Fatalf("first seen changed to %v", r.FirstSeen)
			}
		})
	}
}

// FuzzImportLine: any line either imports a record that exports and
// re-imports identically, or is reported bad; never a panic.
func FuzzImportLine(f *testing.F) {
	f.Add(`{"mac":"02:00:00:00:00:01","identity":"a","method":"mab","last_authorized":"2026-11-22T12:00:00Z","attrs":[{"type":81,"tag":1,"value":"3431"}]}`)
	f.Add(`{"identity":"x","last_authorized":"2026-11-22T12:00:00Z","attrs":[{"type":26,"vendor":9,"vendor_type":1,"value":"00"}]}`)
	f.Add(`{}`)
	clk := newFakeClock()
	s := openTestStore(f, clk, nil)
	f.Fuzz(func(t *testing.T, line string) {
		r, err := s.parseImportLine([]byte(line))
		if err != nil {
			return
		}
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("accepted line does not encode: %v", err)
		}
		if _, err := decodeRecord(b); err != nil {
			t.Fatalf("accepted line does not decode: %v", err)
		}
	})
}
