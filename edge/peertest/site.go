package peertest

// A site of several edges in network namespaces: one LAN (a bridge in its own namespace, where the
// NAS lives), each edge with its own WAN link to a router, and the cloud behind the router. Cutting
// one edge's WAN link leaves the others' alone; partitioning an edge from the LAN takes its bridge
// port away, so its peers stop hearing it while its WAN stays up. Same rules as netns.go: addresses
// from 198.18.0.0/15 (RFC 2544), namespaces "mxt-<pid>-<random>-<role>", nothing on the host touched.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Site addresses.
var (
	// SiteNASAddr is the NAS's address on the LAN (the bridge's own address).
	SiteNASAddr = netip.MustParseAddr("198.18.10.100")
	// SiteCloudAddr is the cloud's address behind the router.
	SiteCloudAddr = netip.MustParseAddr("198.18.30.2")
)

// SiteLANAddr is edge i's LAN address (198.18.10.1 for the first).
func SiteLANAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 10, byte(1 + i)}) }

// SiteWANAddr is edge i's WAN address (198.18.21.2 for the first), the source the cloud sees.
func SiteWANAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(21 + i), 2}) }

// Site is a LAN of edges with one WAN link each. Use StartSite.
type Site struct {
	LAN    string   // the bridge and the NAS
	Edges  []string // one namespace per edge
	Router string
	Cloud  string

	cut, parted map[int]bool
}

// StartSite builds a site of n edges (1..9), fails tb when it cannot, and removes it when the test
// ends.
func StartSite(tb testing.TB, n int) *Site {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := StartSiteContext(ctx, n)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// StartSiteContext removes namespaces left by dead runs and builds the site. The caller must Close.
func StartSiteContext(ctx context.Context, n int) (*Site, error) {
	if n < 1 || n > 9 {
		return nil, fmt.Errorf("%w: %d edges (want 1..9)", ErrNetns, n)
	}
	if err := CleanStaleNetns(ctx); err != nil {
		return nil, err
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNetns, err)
	}
	base := netnsPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:]) + "-"
	s := &Site{LAN: base + "lan", Router: base + "rtr", Cloud: base + "cloud", cut: map[int]bool{}, parted: map[int]bool{}}
	for i := range n {
		s.Edges = append(s.Edges, base+"e"+strconv.Itoa(i))
	}
	steps := [][]string{
		{"netns", "add", s.LAN}, {"netns", "add", s.Router}, {"netns", "add", s.Cloud},
		{"-n", s.LAN, "link", "set", "lo", "up"}, {"-n", s.Router, "link", "set", "lo", "up"}, {"-n", s.Cloud, "link", "set", "lo", "up"},
		{"-n", s.LAN, "link", "add", "br0", "type", "bridge"},
		{"-n", s.LAN, "addr", "add", SiteNASAddr.String() + "/24", "dev", "br0"},
		{"-n", s.LAN, "link", "set", "br0", "up"},
		{"-n", s.Cloud, "link", "add", "lan0", "type", "veth", "peer", "name", "cloud0", "netns", s.Router},
		{"-n", s.Cloud, "addr", "add", SiteCloudAddr.String() + "/24", "dev", "lan0"},
		{"-n", s.Router, "addr", "add", "198.18.30.1/24", "dev", "cloud0"},
		{"-n", s.Cloud, "link", "set", "lan0", "up"}, {"-n", s.Router, "link", "set", "cloud0", "up"},
		{"-n", s.Cloud, "route", "add", "default", "via", "198.18.30.1"},
		{"netns", "exec", s.Router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for i, e := range s.Edges {
		port, wan, gw := "p"+strconv.Itoa(i), SiteWANAddr(i), netip.AddrFrom4([4]byte{198, 18, byte(21 + i), 1})
		steps = append(steps,
			[]string{"netns", "add", e},
			[]string{"-n", e, "link", "set", "lo", "up"},
			[]string{"-n", e, "link", "add", "lan0", "type", "veth", "peer", "name", port, "netns", s.LAN},
			[]string{"-n", s.LAN, "link", "set", port, "master", "br0"},
			[]string{"-n", s.LAN, "link", "set", port, "up"},
			[]string{"-n", e, "addr", "add", SiteLANAddr(i).String() + "/24", "dev", "lan0"},
			[]string{"-n", e, "link", "set", "lan0", "up"},
			[]string{"-n", e, "link", "add", "wan0", "type", "veth", "peer", "name", "e" + strconv.Itoa(i), "netns", s.Router},
			[]string{"-n", e, "addr", "add", wan.String() + "/24", "dev", "wan0"},
			[]string{"-n", s.Router, "addr", "add", gw.String() + "/24", "dev", "e" + strconv.Itoa(i)},
			[]string{"-n", e, "link", "set", "wan0", "up"},
			[]string{"-n", s.Router, "link", "set", "e" + strconv.Itoa(i), "up"},
			[]string{"-n", e, "route", "add", "default", "via", gw.String()},
		)
	}
	for _, st := range steps {
		if err := runIP(ctx, st...); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// CutWAN blackholes edge i's WAN link in the router, both ways: packets from it are dropped by a
// blackhole rule, packets to it by a blackhole route, without a word. The other edges keep theirs.
func (s *Site) CutWAN(ctx context.Context, i int) error {
	if s.cut[i] {
		return nil
	}
	a := SiteWANAddr(i).String()
	if err := runIP(ctx, "-n", s.Router, "rule", "add", "from", a, "blackhole", "priority", strconv.Itoa(100+i)); err != nil {
		return err
	}
	if err := runIP(ctx, "-n", s.Router, "route", "add", "blackhole", a+"/32"); err != nil {
		return err
	}
	s.cut[i] = true
	return nil
}

// RestoreWAN undoes CutWAN.
func (s *Site) RestoreWAN(ctx context.Context, i int) error {
	if !s.cut[i] {
		return nil
	}
	a := SiteWANAddr(i).String()
	if err := runIP(ctx, "-n", s.Router, "rule", "del", "from", a, "blackhole", "priority", strconv.Itoa(100+i)); err != nil {
		return err
	}
	if err := runIP(ctx, "-n", s.Router, "route", "del", "blackhole", a+"/32"); err != nil {
		return err
	}
	s.cut[i] = false
	return nil
}

// PartitionLAN takes edge i's port off the bridge: the other edges and the NAS stop hearing it
// (frames go nowhere; its link stays up, as with a failed switch port further up).
func (s *Site) PartitionLAN(ctx context.Context, i int) error {
	if s.parted[i] {
		return nil
	}
	if err := runIP(ctx, "-n", s.LAN, "link", "set", "p"+strconv.Itoa(i), "nomaster"); err != nil {
		return err
	}
	s.parted[i] = true
	return nil
}

// HealLAN puts edge i's port back on the bridge.
func (s *Site) HealLAN(ctx context.Context, i int) error {
	if !s.parted[i] {
		return nil
	}
	if err := runIP(ctx, "-n", s.LAN, "link", "set", "p"+strconv.Itoa(i), "master", "br0"); err != nil {
		return err
	}
	s.parted[i] = false
	return nil
}

// Close deletes every namespace of the site.
func (s *Site) Close() error {
	var errs []error
	for _, ns := range append([]string{s.LAN, s.Router, s.Cloud}, s.Edges...) {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, runIP(ctx, "netns", "delete", ns))
		cancel()
	}
	return errors.Join(errs...)
}
