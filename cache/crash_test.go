package cache

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	crashChildEnv   = "MXEDGE_CACHE_CRASH_CHILD" // path of the DB; set only in the child
	crashBatchSize  = 64
	crashMaxRecords = 500000
	crashMaxTime    = 30 * time.Second
)

func crashMAC(i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", (i>>32)&0xff, (i>>24)&0xff, (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

// TestCrashDuringWriteStorm re-executes the test binary as a child that
// learns records as fast as the batched writer (fsync on) takes them and
// prints "accepted=N committed=M" as it goes. The parent SIGKILLs it
// mid-storm, reopens the file and checks that it opens, passes bbolt's
// consistency check, that every record decodes and is indexed, and that at
// most one batch was lost: the child never lets more than BatchSize
// operations be accepted but not durable, so the records on disk must be at
// least the last committed count and at least the last accepted count minus
// one batch. Batches commit in queue order, so what survives is a prefix.
func TestCrashDuringWriteStorm(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "cache.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringWriteStorm$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
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

	var lastAccepted, lastCommitted int
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(crashMaxTime)
	for sc.Scan() {
		a, c, ok := parseCrashLine(sc.Text())
		if !ok {
			continue
		}
		lastAccepted, lastCommitted = a, c
		// Kill once the storm is well under way, at an arbitrary point.
		if c >= 20*crashBatchSize || time.Now().After(deadline) {
			break
		}
	}
	// Land the kill at an arbitrary point of the writer's cycle.
	time.Sleep(time.Duration(rand.IntN(int(5 * time.Millisecond))))
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	killed = true
	// Lines already in the pipe were printed before the kill: read them.
	for sc.Scan() {
		if a, c, ok := parseCrashLine(sc.Text()); ok {
			lastAccepted, lastCommitted = a, c
		}
	}
	werr := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL (it finished the storm first?): %v", werr)
	}
	if lastCommitted == 0 {
		t.Fatal("child reported no commits before the kill")
	}

	// Reopen: it must open, check clean, and every record must decode.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	n := 0
	maxIdx := -1
	must(t, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		recs := tx.Bucket(bucketRecords)
		if err := recs.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			i, err := strconv.Atoi(strings.TrimPrefix(r.Identity, "crash"))
			if err != nil || r.MAC != crashMAC(i) {
				return fmt.Errorf("record %+v does not match its key", r)
			}
			maxIdx = max(maxIdx, i)
			n++
			return nil
		}); err != nil {
			return err
		}
		if e, i := tx.Bucket(bucketExpiry).Stats().KeyN, tx.Bucket(bucketIdent).Stats().KeyN; e != n || i != n {
			return fmt.Errorf("indexes out of step: %d records, %d expiry, %d identity", n, e, i)
		}
		return nil
	}))
	must(t, db.Close())
	t.Logf("child accepted >= %d, committed >= %d at its last report; %d records on disk", lastAccepted, lastCommitted, n)
	if maxIdx != n-1 {
		t.Fatalf("records on disk are not a prefix: %d records, highest index %d", n, maxIdx)
	}
	if n < lastCommitted {
		t.Fatalf("lost committed records: %d on disk, %d reported committed", n, lastCommitted)
	}
	if lost := lastAccepted - n; lost > crashBatchSize {
		t.Fatalf("lost %d accepted records, more than one batch (%d)", lost, crashBatchSize)
	}
	// The store opens cleanly on top of it and agrees on the count.
	s, err := Open(Options{Path: path})
	must(t, err)
	defer s.Close()
	if st := s.Stats(); st.Entries != n {
		t.Fatalf("entry count %d, records %d", st.Entries, n)
	}
}

func parseCrashLine(s string) (accepted, committed int, ok bool) {
	_, err := fmt.Sscanf(s, "accepted=%d committed=%d", &accepted, &committed)
	return accepted, committed, err == nil
}

// crashChild is the write storm. fsync is on (NoSync false).
func crashChild(t *testing.T, path string) {
	s, err := Open(Options{Path: path, BatchSize: crashBatchSize, BatchDelay: 2 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), crashMaxTime)
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	w := bufio.NewWriter(os.Stdout)
	for i := 0; i < crashMaxRecords && ctx.Err() == nil; i++ {
		// Pace to the writer: never more than one batch accepted but not
		// durable. This is what makes "lose at most one batch" testable.
		for i-int(s.Stats().Committed) >= crashBatchSize && ctx.Err() == nil {
			time.Sleep(50 * time.Microsecond)
		}
		s.Learn(Record{MAC: crashMAC(i), Identity: fmt.Sprintf("crash%d", i), Method: MethodMAB,
			Attrs: []Attr{{Type: 81, Tag: 1, Value: []byte("41")}}})
		if (i+1)%16 == 0 {
			fmt.Fprintf(w, "accepted=%d committed=%d\n", i+1, s.Stats().Committed)
			_ = w.Flush()
		}
	}
	cancel()
	t.Log("crash child finished without being killed")
}
