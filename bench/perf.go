package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PerfEnv names the directory into which BenchmarkProxy records each mxedge window with
// `perf record -F 4999 -g` (NAME.data), NAME being the row's upstream, method and concurrency;
// PerfStatEnv the directory into which it counts the window's system calls and context switches
// with `perf stat` (NAME.stat). Unset: nothing is recorded. The profilers cost CPU on the same
// cores (the system-call tracepoints most), so a profiled run's figures are not the ones to report.
const (
	PerfEnv     = "MXEDGE_BENCH_PERF"
	PerfStatEnv = "MXEDGE_BENCH_PERF_STAT"
)

// perfRun is one window's running profilers.
type perfRun struct {
	cmds []*exec.Cmd
}

// startPerf starts the profilers PerfEnv and PerfStatEnv ask for on pid, for d (nothing when
// neither is set or pid is 0).
func startPerf(name string, pid int, d time.Duration) (*perfRun, error) {
	if pid == 0 {
		return nil, nil
	}
	name = strings.NewReplacer("/", "-", " ", "-").Replace(name)
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	p := strconv.Itoa(pid)
	var args [][]string
	if dir := os.Getenv(PerfEnv); dir != "" {
		args = append(args, []string{"record", "-q", "-F", "4999", "-g", "-p", p, "-o", filepath.Join(dir, name+".data"), "--", "sleep", secs})
	}
	if dir := os.Getenv(PerfStatEnv); dir != "" {
		args = append(args, []string{"stat", "-e", "syscalls:sys_enter_*", "-e", "context-switches", "-p", p, "-o", filepath.Join(dir, name+".stat"), "--", "sleep", secs})
	}
	if len(args) == 0 {
		return nil, nil
	}
	r := &perfRun{}
	for _, a := range args {
		if err := os.MkdirAll(filepath.Dir(a[len(a)-4]), 0o755); err != nil {
			r.wait()
			return nil, fmt.Errorf("bench: perf: %w", err)
		}
		cmd := exec.Command("perf", a...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			r.wait()
			return nil, fmt.Errorf("bench: perf: %w", err)
		}
		r.cmds = append(r.cmds, cmd)
	}
	return r, nil
}

// wait waits for the profilers to end (each stops after its own duration).
func (r *perfRun) wait() {
	if r == nil {
		return
	}
	for _, c := range r.cmds {
		_ = c.Wait()
	}
}
