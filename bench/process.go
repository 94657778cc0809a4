package bench

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
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// Process is a child process under measurement: mxedge or the minimal responder.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// StartProcess starts bin in its own process group with stdout and stderr in logPath. The kernel
// kills it if the benchmark dies (Pdeathsig), so no child outlives `go test -timeout`.
func StartProcess(name, logPath string, env []string, bin string, args ...string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
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

// CPUTime is the process's user+system CPU time, all threads.
func (p *Process) CPUTime() (time.Duration, error) {
	select {
	case <-p.done:
		if st := p.cmd.ProcessState; st != nil {
			return st.UserTime() + st.SystemTime(), nil
		}
		return 0, fmt.Errorf("bench: %s: no process state", p.name)
	default:
	}
	return ProcCPUTime(p.Pid())
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
			err = fmt.Errorf("bench: stop %s: %w", p.name, e)
		}
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
			err = fmt.Errorf("bench: %s ignored SIGTERM for %v, killed", p.name, stopGrace)
		}
	})
	return err
}

// WaitUntil polls check every 20 ms until it succeeds, the process exits, ctx ends or timeout passes.
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
			return fmt.Errorf("bench: %s exited during start: %v\n%s", p.name, p.waitErr, p.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("bench: %s not ready: %w (last: %v)\n%s", p.name, ctx.Err(), last, p.LogTail(30))
		case <-tick.C:
		}
	}
}
