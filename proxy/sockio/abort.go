package sockio

import "net"

// Abort closes a TCP connection at once: SO_LINGER 0 makes the close discard what the kernel still
// holds to send and reset the connection, instead of leaving an orphaned socket that retransmits
// it for minutes. On a dead link that matters twice: nothing waits on the close, and nothing the
// link swallowed arrives at the peer long after the requests it carried were retried elsewhere,
// where it would be a late duplicate out of order (RFC 2866 accounting). Connections that are not
// TCP are closed as they are.
func Abort(nc net.Conn) error {
	if l, ok := nc.(interface{ SetLinger(sec int) error }); ok {
		l.SetLinger(0)
	}
	return nc.Close()
}
