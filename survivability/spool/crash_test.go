package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	crashChildEnv  = "MXEDGE_SPOOL_CRASH_CHILD" // "mode:path"; set only in the child
	crashAppenders = 16
	crashWindow    = 8
	crashMaxTime   = 30 * time.Second
)

// TestCrash re-executes the test binary as a child that spools accounting
// records and prints a line for every record it acknowledged ("ack SEQ",
// printed only after Append returned nil, as mxedge answers the NAS only
// then) and, in the replay mode, for every record the upstream accepted
// ("delivered SEQ", printed before done(nil)). The parent SIGKILLs it at an
// arbitrary point, reopens the file and checks:
//   - the file opens and passes bbolt's consistency check;
//   - zero loss: every acknowledged seq is on disk, or was delivered;
//   - the records on disk decode and replay in seq order;
//   - the duplicate bound: records delivered but still on disk (they will
//     be sent again) are at most the replay window;
//   - in the replay-keyed mode (40 sessions, ReplayWith with a Key), each
//     session's deliveries before the kill and in the replay after it are
//     in seq order, duplicates included.
func TestCrash(t *testing.T) {
	if v := os.Getenv(crashChildEnv); v != "" {
		crashChild(v)
		return
	}
	for _, mode := range []string{"append", "replay", "replay-keyed"} {
		t.Run(mode, func(t *testing.T) { crashParent(t, mode) })
	}
}

func crashParent(t *testing.T, mode string) {
	path := filepath.Join(t.TempDir(), "spool.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+mode+":"+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	acked := map[uint64]bool{}
	delivered := map[uint64]bool{}
	type delivery struct {
		seq     uint64
		session string
	}
	var deliveries []delivery // in send order
	record := func(line string) {
		var seq uint64
		var session string
		if _, err := fmt.Sscanf(line, "ack %d", &seq); err == nil {
			acked[seq] = true
		} else if _, err := fmt.Sscanf(line, "delivered %d %s", &seq, &session); err == nil {
			delivered[seq] = true
			deliveries = append(deliveries, delivery{seq, session})
		}
	}
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(crashMaxTime)
	for sc.Scan() {
		record(sc.Text())
		if mode == "append" && len(acked) >= 3000 || mode != "append" && len(delivered) >= 600 || time.Now().After(deadline) {
			break
		}
	}
	// Land the kill at an arbitrary point of a commit cycle.
	time.Sleep(time.Duration(rand.IntN(int(3 * time.Millisecond))))
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	killed = true
	for sc.Scan() { // lines already in the pipe were printed before the kill
		record(sc.Text())
	}
	werr := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL (it finished first?): %v", werr)
	}
	if len(acked) == 0 || mode != "append" && len(delivered) == 0 {
		t.Fatalf("child reported %d acks, %d deliveries before the kill", len(acked), len(delivered))
	}

	s := openTest(t, Options{Path: path})
	onDisk := map[uint64]bool{}
	must(t, s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			e, err := decodeRecord(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			onDisk[e.Seq] = true
			return nil
		})
	}))
	if s.Len() != len(onDisk) {
		t.Fatalf("Len %d, %d records in the bucket", s.Len(), len(onDisk))
	}
	lost := 0
	for seq := range acked {
		if !onDisk[seq] && !delivered[seq] {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged seq %d lost", seq)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged records lost of %d", lost, len(acked))
	}
	dups := 0
	for seq := range delivered {
		if onDisk[seq] {
			dups++
		}
	}
	if dups > crashWindow {
		t.Fatalf("%d delivered records still on disk, more than the window %d", dups, crashWindow)
	}
	var got []Entry
	if mode == "replay-keyed" {
		_, err := s.ReplayWith(context.Background(), ReplayOptions{Window: crashWindow, Key: sessionKey,
			Send: func(e Entry, _ time.Duration, done func(error)) {
				got = append(got, e)
				deliveries = append(deliveries, delivery{e.Seq, sessionKey(e)})
				done(nil)
			}})
		must(t, err)
		last := map[string]uint64{}
		for _, d := range deliveries {
			if d.seq < last[d.session] {
				t.Fatalf("session %s: seq %d delivered after seq %d (across the kill)", d.session, d.seq, last[d.session])
			}
			last[d.session] = d.seq
		}
	} else {
		got = drain(t, s, 32)
		assertInOrder(t, got)
	}
	if len(got) != len(onDisk) {
		t.Fatalf("replayed %d of %d after the crash", len(got), len(onDisk))
	}
	t.Logf("%s: %d acknowledged, %d delivered, %d on disk after SIGKILL, %d would be sent twice (bound %d), 0 lost",
		mode, len(acked), len(delivered), len(onDisk), dups, crashWindow)
}

// crashChild spools (fsync on) until killed. Each line is one write(2), so
// a line the parent reads was printed before the kill.
func crashChild(v string) {
	mode, path, _ := strings.Cut(v, ":")
	s, err := Open(Options{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	var outMu sync.Mutex
	println := func(format string, a ...any) {
		line := fmt.Sprintf(format+"\n", a...)
		outMu.Lock()
		_, _ = os.Stdout.WriteString(line)
		outMu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxTime)
	defer cancel()
	appendN := func(perWorker int, session func(g, i int) string) {
		var wg sync.WaitGroup
		for g := range crashAppenders {
			wg.Go(func() {
				for i := 0; i < perWorker && ctx.Err() == nil; i++ {
					seq, err := s.Append(Entry{Client: "sw", Packet: acctRequest(byte(i), session(g, i))})
					if err != nil {
						fmt.Fprintln(os.Stderr, "crash child append:", err)
						os.Exit(2)
					}
					println("ack %d", seq)
				}
			})
		}
		wg.Wait()
	}
	unique := func(g, i int) string { return fmt.Sprintf("g%02d-%06d", g, i) }
	switch mode {
	case "append":
		appendN(1<<20, unique) // until killed or the time limit
	case "replay", "replay-keyed":
		o := ReplayOptions{Window: crashWindow, Send: func(e Entry, _ time.Duration, done func(error)) {
			println("delivered %d %s", e.Seq, sessionKey(e))
			done(nil)
		}}
		if mode == "replay" {
			appendN(2000/crashAppenders, unique)
		} else {
			// 40 sessions of 50 records, each session written by several appenders.
			appendN(2000/crashAppenders, func(g, i int) string { return fmt.Sprintf("s%02d", (g*7+i)%40) })
			o.Key = sessionKey
		}
		for ctx.Err() == nil {
			_, err := s.ReplayWith(ctx, o)
			if err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "crash child replay:", err)
				os.Exit(2)
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Fprintln(os.Stderr, "crash child finished without being killed")
	os.Exit(3)
}
