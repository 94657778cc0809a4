package lab

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Roles of the lab's sockets, as PortInUseError names them.
const (
	RoleAuth  = "RADIUS authentication"
	RoleAcct  = "RADIUS accounting"
	RoleCloud = "lab cloud RadSec"
)

// PortInUseError says that an address the lab was asked to listen on is taken, and by whom when
// the kernel's socket tables tell (see Holder).
type PortInUseError struct {
	Role    string         // RoleAuth, RoleAcct or RoleCloud
	Network string         // "udp" or "tcp"
	Addr    netip.AddrPort // the address asked for
	Holder  string         // e.g. "freeradius (pid 812)"; "" when it cannot be found
	Err     error          // the bind error
}

func (e *PortInUseError) Error() string {
	who := "another process"
	if e.Holder != "" {
		who = e.Holder
	}
	return fmt.Sprintf("lab: %s port %s/%s is already in use by %s", e.Role, e.Addr, e.Network, who)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// portInUse returns a PortInUseError when err is a bind failure with EADDRINUSE, else nil.
func portInUse(role, network string, addr netip.AddrPort, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil
	}
	return &PortInUseError{Role: role, Network: network, Addr: addr, Holder: Holder(network, addr.Port()), Err: err}
}

// Explain turns an error from starting the edge on this lab's configuration into a PortInUseError
// when the edge could not bind one of the lab's RADIUS addresses; other errors come back as they are.
func (l *Lab) Explain(err error) error {
	var op *net.OpError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &op) {
		return err
	}
	ua, ok := op.Addr.(*net.UDPAddr)
	if !ok {
		return err
	}
	port := uint16(ua.Port)
	for _, s := range []struct {
		role string
		addr netip.AddrPort
	}{{RoleAuth, l.Auth}, {RoleAcct, l.Acct}} {
		if s.addr.Port() == port {
			return &PortInUseError{Role: s.role, Network: "udp", Addr: s.addr, Holder: Holder("udp", port), Err: err}
		}
	}
	return err
}

// Holder names the process holding a socket bound to port ("freeradius (pid 812)"), from the
// kernel's socket tables (/proc/net/udp, udp6, tcp, tcp6: local address and inode; proc(5)) and
// the file descriptors of every process (/proc/PID/fd links "socket:[INODE]"). For tcp only
// listening sockets count. It returns "" when nothing is found, e.g. when the holder is another
// user's process and this one may not read its descriptors.
func Holder(network string, port uint16) string {
	inodes := map[string]bool{}
	for _, table := range []string{network, network + "6"} {
		for _, ino := range socketInodes(filepath.Join("/proc/net", table), port, network == "tcp") {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return ""
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				name := strings.TrimSpace(string(comm))
				if name == "" {
					name = "process"
				}
				return fmt.Sprintf("%s (pid %d)", name, pid)
			}
		}
	}
	return ""
}

// Columns of /proc/net/{udp,tcp}[6] (proc(5)): "sl local_address rem_address st ... inode".
const (
	colLocal = 1
	colState = 3
	colInode = 9
	// tcpListen is TCP_LISTEN in the st column.
	tcpListen = "0A"
)

// socketInodes returns the inodes of the sockets in one /proc/net table bound to port.
func socketInodes(table string, port uint16, listenOnly bool) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= colInode {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[colLocal], ":")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(hexPort)
		if err != nil || len(b) != 2 || uint16(b[0])<<8|uint16(b[1]) != port {
			continue
		}
		if listenOnly && fields[colState] != tcpListen {
			continue
		}
		if fields[colInode] != "0" {
			out = append(out, fields[colInode])
		}
	}
	return out
}
