package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat and /proc/stat. It is part of the
// Linux user-space ABI (100 on every architecture Go supports).
const clockTicks = 100

// ErrProcStat reports a /proc file that could not be read or parsed.
var ErrProcStat = errors.New("bench: /proc stat")

// ProcCPUTime returns utime+stime of pid, all threads (the thread group), from /proc/PID/stat
// (proc(5)). Its resolution is one clock tick (10 ms): measure over seconds.
func ProcCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	return parseProcStat(string(b))
}

// ProcRSS returns the resident set size of pid (VmRSS in /proc/PID/status, proc(5)).
func ProcRSS(pid int) (uint64, error) {
	m, err := ProcMemory(pid)
	return m.RSS, err
}

// Memory is a process's resident memory from /proc/PID/status (proc(5)): RSS = Anon + File + Shmem.
// File counts the pages of mapped files that are resident, such as a bbolt database's mmap, which
// the kernel may drop again at any time; Anon is the heap, stacks and the Go runtime's own.
type Memory struct {
	RSS, Anon, File uint64 // bytes
}

// ProcMemory reads VmRSS, RssAnon and RssFile of pid.
func ProcMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	var m Memory
	if m.RSS, err = parseRSS(string(b)); err != nil {
		return Memory{}, err
	}
	// RssAnon and RssFile exist since Linux 4.5; without them only RSS is known.
	m.Anon, _ = statusKB(string(b), "RssAnon:")
	m.File, _ = statusKB(string(b), "RssFile:")
	return m, nil
}

// parseRSS extracts VmRSS, in bytes, from /proc/PID/status.
func parseRSS(s string) (uint64, error) { return statusKB(s, "VmRSS:") }

// statusKB extracts the field named key ("VmRSS:") of /proc/PID/status, given in kB, in bytes.
func statusKB(s, key string) (uint64, error) {
	for line := range strings.Lines(s) {
		v, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		kb, ok := strings.CutSuffix(strings.TrimSpace(v), " kB")
		n, err := strconv.ParseUint(strings.TrimSpace(kb), 10, 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("%w: %s %q", ErrProcStat, strings.TrimSuffix(key, ":"), v)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("%w: no %s", ErrProcStat, strings.TrimSuffix(key, ":"))
}

// SelfCPUTime is ProcCPUTime of this process (the load generator).
func SelfCPUTime() (time.Duration, error) { return ProcCPUTime(os.Getpid()) }

// parseProcStat extracts utime+stime from a /proc/PID/stat line. The command name (field 2) is in
// parentheses and may contain spaces or ')', so fields are counted from the last ')'.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no command field", ErrProcStat)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(f) <= stimeIdx {
		return 0, fmt.Errorf("%w: short line", ErrProcStat)
	}
	ut, err1 := strconv.ParseUint(f[utimeIdx], 10, 64)
	st, err2 := strconv.ParseUint(f[stimeIdx], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	return ticks(ut + st), nil
}

// HostCPU is the machine-wide CPU time from the first line of /proc/stat.
type HostCPU struct {
	Busy, Total time.Duration // Busy excludes idle and iowait
}

// ReadHostCPU reads the aggregate "cpu" line of /proc/stat.
func ReadHostCPU() (HostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return HostCPU{}, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	return parseHostStat(string(b))
}

// parseHostStat parses "cpu user nice system idle iowait irq softirq steal guest guest_nice".
// guest and guest_nice are already included in user and nice, so they are not added again.
func parseHostStat(s string) (HostCPU, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return HostCPU{}, fmt.Errorf("%w: no aggregate cpu line", ErrProcStat)
	}
	const idle, iowait, guest = 4, 5, 9
	var h HostCPU
	for i := 1; i < len(f) && i < guest; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return HostCPU{}, fmt.Errorf("%w: %w", ErrProcStat, err)
		}
		h.Total += ticks(v)
		if i != idle && i != iowait {
			h.Busy += ticks(v)
		}
	}
	return h, nil
}

func ticks(n uint64) time.Duration { return time.Duration(n) * (time.Second / clockTicks) }

// LoadAvg returns the first three fields of /proc/loadavg, or "?".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ProcCtxSwitches returns the voluntary and involuntary context switches of every thread of pid,
// summed over /proc/PID/task/*/status (proc(5)); /proc/PID/status alone counts the main thread.
// Threads that exited since the last call are no longer counted, so compare it over windows in
// which the thread count is steady.
func ProcCtxSwitches(pid int) (voluntary, involuntary uint64, err error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue // the thread exited between ReadDir and ReadFile
		}
		v, n, err := parseCtxSwitches(string(b))
		if err != nil {
			return 0, 0, err
		}
		voluntary, involuntary = voluntary+v, involuntary+n
	}
	return voluntary, involuntary, nil
}

// parseCtxSwitches extracts voluntary_ctxt_switches and nonvoluntary_ctxt_switches from a status file.
func parseCtxSwitches(s string) (voluntary, involuntary uint64, err error) {
	found := 0
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("%w: %s %q", ErrProcStat, k, v)
		}
		if k == "voluntary_ctxt_switches" {
			voluntary = n
		} else {
			involuntary = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%w: no context switch counts", ErrProcStat)
	}
	return voluntary, involuntary, nil
}
