package lab

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestHolder finds this test process as the holder of a UDP socket (IPv4 and IPv6 tables) and of a
// listening TCP socket, and nothing on a port nobody holds.
func TestHolder(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(comm)) + " (pid " + strconv.Itoa(os.Getpid()) + ")"
	udp4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp4.Close()
	udp6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer udp6.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	free, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	freePort := uint16(free.LocalAddr().(*net.UDPAddr).Port)
	free.Close()
	for _, tc := range []struct {
		name, network string
		port          uint16
		want          string
	}{
		{"udp4", "udp", uint16(udp4.LocalAddr().(*net.UDPAddr).Port), want},
		{"udp6", "udp", uint16(udp6.LocalAddr().(*net.UDPAddr).Port), want},
		{"tcp listener", "tcp", uint16(tcp.Addr().(*net.TCPAddr).Port), want},
		{"free", "udp", freePort, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Holder(tc.network, tc.port); got != tc.want {
				t.Errorf("Holder(%s, %d) = %q, want %q", tc.network, tc.port, got, tc.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/mxedge":    "/usr/bin/mxedge",
		"/tmp/a b/mxedge":    "'/tmp/a b/mxedge'",
		"/tmp/it's/mxedge":   `'/tmp/it'\''s/mxedge'`,
		"":                   "''",
		"/tmp/x-1.2+3/m_e.d": "/tmp/x-1.2+3/m_e.d",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
