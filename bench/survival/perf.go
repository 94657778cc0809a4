package survival

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// PerfEnv names a directory: when set, each measured window of a server process is recorded with
// `perf record -g` into DIR/NAME.data, so the benchmark can say where a server's CPU goes (build
// mxedge without -s -w for symbols: `go build -o /tmp/mxedge .`, then MXEDGE_BIN=/tmp/mxedge).
const PerfEnv = "MXEDGE_SURVIVAL_PERF"

// Perf is one running `perf record`.
type Perf struct {
	cmd *exec.Cmd
	out string
}

// StartPerf records pid (all threads, call graphs) into dir/name.data for at most d.
func StartPerf(dir, name string, pid int, d time.Duration) (*Perf, error) {
	out := filepath.Join(dir, name+".data")
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	cmd := exec.Command("perf", "record", "-q", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", out, "--", "sleep", secs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("survival: perf: %w", err)
	}
	return &Perf{cmd: cmd, out: out}, nil
}

// Wait waits for the recording to end and returns its file.
func (p *Perf) Wait() (string, error) {
	if err := p.cmd.Wait(); err != nil {
		return p.out, fmt.Errorf("survival: perf: %w", err)
	}
	return p.out, nil
}
