package identity

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openTestQueue(tb testing.TB, path string, max int) *queue {
	tb.Helper()
	q, err := openQueue(path, max)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { q.close() })
	return q
}

func TestQueueOrderAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := openQueue(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	var items []item
	for i := range 10 {
		items = append(items, item{kind: KindConnect, key: fmt.Sprint("s", i%3), payload: []byte(fmt.Sprint(i))})
	}
	if _, _, err := q.append(items); err != nil {
		t.Fatal(err)
	}
	got, err := q.peek(4)
	if err != nil || len(got) != 4 {
		t.Fatalf("peek: %v %d", err, len(got))
	}
	if err := q.remove(got); err != nil {
		t.Fatal(err)
	}
	q.close()
	q = openTestQueue(t, path, 100)
	if q.len() != 6 {
		t.Fatalf("reopened len %d, want 6", q.len())
	}
	rest, _ := q.peek(100)
	for i, it := range rest {
		if string(it.payload) != fmt.Sprint(i+4) || it.key != fmt.Sprint("s", (i+4)%3) || it.kind != KindConnect {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
}

func TestQueueBoundCoalescesUpdatesFirst(t *testing.T) {
	q := openTestQueue(t, filepath.Join(t.TempDir(), "q.db"), 5)
	mk := func(k Kind, key, p string) item { return item{kind: k, key: key, payload: []byte(p)} }
	// a: connect, update, update; b: connect, update. Full at 5.
	if _, _, err := q.append([]item{mk(KindConnect, "a", "a1"), mk(KindUpdate, "a", "a2"), mk(KindUpdate, "a", "a3"),
		mk(KindConnect, "b", "b1"), mk(KindUpdate, "b", "b2")}); err != nil {
		t.Fatal(err)
	}
	// Two more: the superseded a2 and a3 go (a3 is superseded by a4), b2 stays (nothing of b follows it).
	c, d, err := q.append([]item{mk(KindUpdate, "a", "a4"), mk(KindDisconnect, "c", "c1")})
	if err != nil || c != 2 || d != 0 {
		t.Fatalf("coalesced %d dropped %d err %v, want 2 0", c, d, err)
	}
	assertPayloads(t, q, "a1 b1 b2 a4 c1")
	// Nothing superseded left: the oldest event goes, counted as dropped.
	c, d, err = q.append([]item{mk(KindConnect, "d", "d1")})
	if err != nil || c != 0 || d != 1 {
		t.Fatalf("coalesced %d dropped %d err %v, want 0 1", c, d, err)
	}
	assertPayloads(t, q, "b1 b2 a4 c1 d1")
	if cc, dd := q.counts(); cc != 2 || dd != 1 {
		t.Fatalf("counts %d %d", cc, dd)
	}
}

func assertPayloads(t *testing.T, q *queue, want string) {
	t.Helper()
	items, err := q.peek(100)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for i, it := range items {
		if i > 0 {
			got += " "
		}
		got += string(it.payload)
	}
	if got != want || q.len() != len(items) {
		t.Fatalf("queue %q (len %d), want %q", got, q.len(), want)
	}
}

func TestAcctRecordRoundTrip(t *testing.T) {
	r := acctRecord{received: time.Unix(1700000000, 5), nas: "sw1", pkt: []byte{4, 1, 0, 20, 1, 2, 3}}
	got, err := decodeAcct(r.encode())
	if err != nil || got.nas != "sw1" || string(got.pkt) != string(r.pkt) || !got.received.Equal(r.received) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := decodeAcct([]byte{1, 2}); err == nil {
		t.Fatal("short record decoded")
	}
	it := item{kind: KindUpdate, key: "k", payload: []byte("p")}
	back, err := decodeItem(seqKey(7), it.encode())
	if err != nil || back.seq != 7 || back.key != "k" || string(back.payload) != "p" || back.kind != KindUpdate {
		t.Fatalf("item round trip: %+v %v", back, err)
	}
	if _, err := decodeItem(seqKey(1), []byte{2, 200}); err == nil {
		t.Fatal("bad item decoded")
	}
}
