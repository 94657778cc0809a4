package resolve

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// hostsRecheck bounds how often the hosts file is stat'ed (glibc and the
	// Go resolver use the same 5s idea).
	hostsRecheck = 5 * time.Second
	// maxHostsSize caps how much of the hosts file is read: a runaway file
	// must not exhaust memory on an edge box.
	maxHostsSize = 1 << 20
)

// hostsFile is the /etc/hosts view: parsed once, re-parsed when the file's
// size or modification time changes.
type hostsFile struct {
	path string

	mu      sync.Mutex
	checked time.Time // last stat, on the Resolver clock
	forced  bool      // Invalidate asked for a re-stat
	mtime   time.Time
	size    int64
	byName  map[string][]netip.Addr
}

// lookup returns the addresses listed for name (lower-case, no trailing
// dot), or nil.
func (h *hostsFile) lookup(name string, now time.Time) []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.forced || h.checked.IsZero() || now.Sub(h.checked) >= hostsRecheck || now.Before(h.checked) {
		h.forced = false
		h.checked = now
		h.reload()
	}
	return h.byName[name]
}

func (h *hostsFile) invalidate() {
	h.mu.Lock()
	h.forced = true
	h.mu.Unlock()
}

// reload re-reads the file if it changed. A missing or unreadable file is
// empty: the hosts file is a convenience, DNS stays authoritative.
func (h *hostsFile) reload() {
	fi, err := os.Stat(h.path)
	if err != nil {
		h.byName, h.mtime, h.size = nil, time.Time{}, 0
		return
	}
	if h.byName != nil && fi.ModTime().Equal(h.mtime) && fi.Size() == h.size {
		return
	}
	f, err := os.Open(h.path)
	if err != nil {
		h.byName = nil
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHostsSize))
	if err != nil {
		h.byName = nil
		return
	}
	h.byName = parseHosts(data)
	if h.byName == nil {
		h.byName = map[string][]netip.Addr{}
	}
	h.mtime, h.size = fi.ModTime(), fi.Size()
}

// parseHosts parses hosts(5): "address name [aliases…]" per line, '#' starts
// a comment. Lines whose address does not parse are skipped, as glibc does.
// Names are folded to lower case (RFC 4343); each name keeps its addresses in
// file order, without duplicates.
func parseHosts(data []byte) map[string][]netip.Addr {
	out := make(map[string][]netip.Addr)
	for line := range bytes.Lines(data) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(string(line))
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		addr = addr.Unmap()
		for _, name := range fields[1:] {
			name = strings.ToLower(strings.TrimRight(name, "."))
			if name == "" || slices.Contains(out[name], addr) {
				continue
			}
			out[name] = append(out[name], addr)
		}
	}
	return out
}
