package survival

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"mxedge/bench"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Process is a child process under measurement, in its own process group, killed by the kernel
// if the benchmark dies (Pdeathsig) so it never outlives `go test -timeout`.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// StartProcess starts bin with stdout and stderr appended to logPath and env added to this
// process's environment.
func StartProcess(name, logPath string, env []string, bin string, args ...string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("survival: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("survival: start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// CPUTime is utime+stime of the process, all threads, from /proc/PID/stat.
func (p *Process) CPUTime() (time.Duration, error) {
	if p.Exited() {
		return 0, fmt.Errorf("survival: %s exited: %v", p.name, p.waitErr)
	}
	return bench.ProcCPUTime(p.Pid())
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of the process's output.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM to the process group, waits up to stopGrace, then SIGKILL. Safe to call twice.
func (p *Process) Stop() error {
	var err error
	p.once.Do(func() {
		pid := p.Pid()
		if e := syscall.Kill(-pid, syscall.SIGTERM); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = fmt.Errorf("survival: stop %s: %w", p.name, e)
		}
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
			err = fmt.Errorf("survival: %s ignored SIGTERM for %v, killed", p.name, stopGrace)
		}
	})
	return err
}

// WaitUntil polls check every 20 ms until it succeeds, the process exits, ctx ends or timeout
// passes.
func (p *Process) WaitUntil(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		last := check()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("survival: %s exited during start: %v\n%s", p.name, p.waitErr, p.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("survival: %s not ready: %w (last: %v)\n%s", p.name, ctx.Err(), last, p.LogTail(30))
		case <-tick.C:
		}
	}
}
