package packet

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// radclientReply runs FreeRADIUS's radclient once as a NAS (User-Name = bob, secret) against a
// responder on loopback that answers its request with what reply builds, and returns what radclient
// printed after "Received Access-Accept" (the attribute lines, tab-indented).
func radclientReply(t *testing.T, secret []byte, reply func(req Packet) ([]byte, error)) string {
	t.Helper()
	bin, err := exec.LookPath("radclient")
	if err != nil {
		t.Fatalf("radclient (freeradius-utils) is required: %v", err)
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, MaxLen)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			done <- err
			return
		}
		req, err := Parse(buf[:n])
		if err != nil {
			done <- err
			return
		}
		resp, err := reply(req)
		if err == nil {
			_, err = c.WriteTo(resp, from)
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-x", "-r", "1", "-t", "5", c.LocalAddr().String(), "auth", string(secret))
	cmd.Stdin = strings.NewReader("User-Name = bob\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("radclient: %v\n%s", err, out)
	}
	if err := <-done; err != nil {
		t.Fatalf("responder: %v", err)
	}
	_, received, ok := strings.Cut(string(out), "Received Access-Accept")
	if !ok {
		t.Fatalf("radclient printed no Access-Accept:\n%s", out)
	}
	return received
}
