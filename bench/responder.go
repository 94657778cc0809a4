package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mxedge/proxy/radsectest"
)

// ResponderEnv, when set in the environment of the test binary, turns it into the minimal RadSec
// responder process instead of running tests: TestMain calls ServeResponderFromEnv first. The value
// is the directory holding responder.conf (written by StartResponder).
const ResponderEnv = "MXEDGE_BENCH_RESPONDER"

// ResponderOptions configure the minimal RadSec responder process (radsectest.Responder: answers
// every Access-Request with Access-Accept, RFC 6614 shared secret "radsec").
type ResponderOptions struct {
	Dir string // where its files go. Required.
	// Cert, Key: its server certificate (must name 127.0.0.1); CA verifies client certificates.
	Cert, Key, CA string
}

// StartResponder re-executes the running test binary as the minimal RadSec responder, so that the
// upstream's CPU is accounted to its own process, and returns it with its "127.0.0.1:PORT" address.
// The test binary's TestMain must call ServeResponderFromEnv.
func StartResponder(ctx context.Context, o ResponderOptions) (*Process, string, error) {
	if o.Dir == "" || o.Cert == "" || o.Key == "" || o.CA == "" {
		return nil, "", errors.New("bench: responder: Dir, Cert, Key and CA are required")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("bench: responder: %w", err)
	}
	conf := strings.Join([]string{o.Cert, o.Key, o.CA}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(o.Dir, "responder.conf"), []byte(conf), 0o600); err != nil {
		return nil, "", fmt.Errorf("bench: responder: %w", err)
	}
	addrFile := filepath.Join(o.Dir, "responder.addr")
	_ = os.Remove(addrFile)
	p, err := StartProcess("responder", filepath.Join(o.Dir, "responder.log"),
		[]string{ResponderEnv + "=" + o.Dir}, self, "-test.run=^$")
	if err != nil {
		return nil, "", err
	}
	var addr string
	err = p.WaitUntil(ctx, 10*time.Second, func() error {
		b, err := os.ReadFile(addrFile)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return errors.New("no address yet")
		}
		addr = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	return p, addr, nil
}

// ServeResponderFromEnv runs the responder when ResponderEnv is set and reports whether it did; it
// returns after SIGTERM or SIGINT. Call it first thing in TestMain and exit when it returns true.
func ServeResponderFromEnv() (bool, error) {
	dir := os.Getenv(ResponderEnv)
	if dir == "" {
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "responder.conf"))
	if err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(f) != 3 {
		return true, errors.New("bench: responder: responder.conf needs cert, key and CA lines")
	}
	cert, err := tls.LoadX509KeyPair(f[0], f[1])
	if err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	caPEM, err := os.ReadFile(f[2])
	if err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return true, fmt.Errorf("bench: responder: no certificate in %s", f[2])
	}
	// RFC 6614 §2.3: mutual authentication; the shared secret is "radsec".
	r, err := radsectest.Start(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, "radsec")
	if err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	defer r.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Write then rename, so the parent never reads half an address.
	tmp := filepath.Join(dir, "responder.addr.tmp")
	if err := os.WriteFile(tmp, []byte(r.Addr().String()+"\n"), 0o600); err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "responder.addr")); err != nil {
		return true, fmt.Errorf("bench: responder: %w", err)
	}
	<-ctx.Done()
	return true, nil
}
