package peertest

// radclient (freeradius-utils 3.2) as a NAS.
//
// Quirks:
//   - With several packets in one -f file radclient sends them over one
//     socket, reuses IDs right after a reply and prints replies as they
//     arrive, so mapping replies back to requests is ambiguous. Radclient runs
//     one radclient process per request (`-c 1`) instead, up to Parallel at a
//     time; each reply is then unambiguous. That costs a few milliseconds per
//     request: for load use a Go generator, not this.
//   - radclient exits 1 when there is no reply and also when the reply code is
//     not the "expected" one (e.g. Access-Reject); neither is an error here.
//     Only a failure to run, or output that shows radclient rejected its
//     input, is.
//   - `-x` prints "Sent <Code> Id N from A to B length L", the sent attributes,
//     then "Received <Code> Id N from B to A length L" and the reply's
//     attributes indented by a tab as `Name = value`; tagged attributes print
//     as `Name:tag = value`. A missing reply prints "No reply from server".
//   - radclient cannot bind a source address, so every request comes from
//     0.0.0.0:ephemeral (seen as 127.0.0.1 on loopback).
//   - `-t` is per try and `-r` counts the tries; the process as a whole gets a
//     deadline of (tries × timeout + 5 s).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one RADIUS request in radclient's text form, e.g.
// `User-Name = "alice"`, `User-Password = "secret"`,
// `Calling-Station-Id = "aa-bb-cc-dd-ee-ff"`, `Message-Authenticator = 0x00`.
type Request struct {
	Attrs []string
}

// Attr is one attribute as radclient or the detail file printed it. Value
// has its surrounding quotes removed; Tag is the RFC 2868 tag ("" if none).
type Attr struct {
	Name, Value string
	Tag         string
}

// Reply is the answer to one Request.
type Reply struct {
	// Code is "Access-Accept", "Access-Reject", "Access-Challenge",
	// "Accounting-Response", … or "" when no reply came.
	Code  string
	Attrs []Attr
	// ID is the RADIUS Identifier of the reply (-1 when none).
	ID int
}

// Get returns the first value of the named attribute ("" if absent).
func (r Reply) Get(name string) string {
	v, _ := r.Lookup(name)
	return v
}

// Lookup returns the first value of the named attribute.
func (r Reply) Lookup(name string) (string, bool) {
	for _, a := range r.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// All returns every value of the named attribute, in order.
func (r Reply) All(name string) []string {
	var out []string
	for _, a := range r.Attrs {
		if a.Name == name {
			out = append(out, a.Value)
		}
	}
	return out
}

// RadclientOptions configures Radclient.
type RadclientOptions struct {
	// Server is "host:port".
	Server string
	// Kind is radclient's command: "auth", "acct", "status", "coa",
	// "disconnect". Default "auth".
	Kind string
	// Secret is the shared secret.
	Secret string
	// Requests are sent one radclient process each.
	Requests []Request
	// Parallel is how many run at once. Default 1 (in order).
	Parallel int
	// Retries is the number of retransmissions after the first try
	// (radclient -r counts tries, so it gets Retries+1). Default 0.
	Retries int
	// Timeout is the wait for a reply per try. Default 2 s.
	Timeout time.Duration
}

// Radclient sends each request with radclient and returns one reply per
// request, in order. A request that got no reply has Code "" and is not an
// error. raw is the combined output of every run, in request order.
func Radclient(ctx context.Context, o RadclientOptions) (replies []Reply, raw string, err error) {
	if o.Server == "" {
		return nil, "", errors.New("peertest: radclient: Server is required")
	}
	if o.Kind == "" {
		o.Kind = "auth"
	}
	if o.Parallel <= 0 {
		o.Parallel = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	bin, err := LookPath("radclient")
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "peertest-radclient-")
	if err != nil {
		return nil, "", fmt.Errorf("peertest: radclient: %w", err)
	}
	defer os.RemoveAll(dir)

	replies = make([]Reply, len(o.Requests))
	outs := make([]string, len(o.Requests))
	errs := make([]error, len(o.Requests))
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, req := range o.Requests {
		path := filepath.Join(dir, "req"+strconv.Itoa(i))
		if err := os.WriteFile(path, []byte(strings.Join(req.Attrs, "\n")+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("peertest: radclient: %w", err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			replies[i], outs[i], errs[i] = radclientOne(ctx, bin, path, o)
		}()
	}
	wg.Wait()
	var b strings.Builder
	for i, out := range outs {
		fmt.Fprintf(&b, "--- request %d ---\n%s", i, out)
	}
	return replies, b.String(), errors.Join(errs...)
}

// radclientOne runs radclient for one request file.
func radclientOne(ctx context.Context, bin, path string, o RadclientOptions) (Reply, string, error) {
	tries := o.Retries + 1
	ctx, cancel := context.WithTimeout(ctx, time.Duration(tries)*o.Timeout+5*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(o.Timeout.Seconds(), 'f', 3, 64)
	cmd := exec.CommandContext(ctx, bin, "-x", "-c", "1", "-r", strconv.Itoa(tries), "-t", secs,
		"-f", path, o.Server, o.Kind, o.Secret)
	outb, runErr := cmd.CombinedOutput()
	out := string(outb)
	rep := parseRadclient(out)
	if ctx.Err() != nil {
		return rep, out, fmt.Errorf("peertest: radclient %s: %w\n%s", path, ctx.Err(), out)
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return rep, out, fmt.Errorf("peertest: radclient: %w", runErr)
	}
	if rep.Code == "" && !strings.Contains(out, "No reply from server") && !ownRequest(out) {
		// Neither a reply nor a timeout: radclient refused its input
		// (unknown attribute, bad secret syntax, unresolvable server).
		return rep, out, fmt.Errorf("peertest: radclient failed: %v\n%s", runErr, out)
	}
	return rep, out, nil
}

// parseRadclient extracts the first received reply from radclient -x output.
func parseRadclient(out string) Reply {
	rep := Reply{ID: -1}
	in := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Received ") {
			f := strings.Fields(line)
			if len(f) >= 2 && isRequestCode(f[1]) {
				// Not a reply: radclient read its own datagram. With the server's port
				// closed, the kernel may hand radclient that very port as its source, and
				// a datagram to 127.0.0.1:P from 127.0.0.1:P comes back to the sender.
				continue
			}
			if rep.Code != "" {
				break // a second reply (retransmission answered twice): keep the first
			}
			if len(f) >= 2 {
				rep.Code = f[1]
				in = true
			}
			if len(f) >= 4 && f[2] == "Id" {
				if id, err := strconv.Atoi(f[3]); err == nil {
					rep.ID = id
				}
			}
			continue
		}
		if line == "" || (line[0] != '\t' && line[0] != ' ') {
			if in {
				in = false
			}
			continue
		}
		if in {
			if a, ok := parseAttrLine(line); ok {
				rep.Attrs = append(rep.Attrs, a)
			}
		}
	}
	return rep
}

// parseAttrLine parses "\tName = value" or "\tName:tag = value" (FreeRADIUS
// print format) and unquotes a double-quoted value.
func parseAttrLine(line string) (Attr, bool) {
	s := strings.TrimSpace(line)
	name, val, ok := strings.Cut(s, " = ")
	if !ok {
		// Operators other than "=" (e.g. "+=", ":=") are not printed for
		// received packets; accept "Name =" with an empty value.
		if n, found := strings.CutSuffix(s, " ="); found {
			name, val, ok = n, "", true
		} else {
			return Attr{}, false
		}
	}
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, " \t") {
		return Attr{}, false
	}
	a := Attr{Name: name}
	if n, tag, found := strings.Cut(name, ":"); found && n != "" && isDigits(tag) {
		a.Name, a.Tag = n, tag
	}
	a.Value = unquote(val)
	return a, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// unquote strips FreeRADIUS double quotes and its backslash escapes.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' || i+1 >= len(v) {
			b.WriteByte(c)
			continue
		}
		i++
		switch v[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// isRequestCode reports whether code names a RADIUS request (RFC 2865 §3, RFC 2866 §3,
// RFC 5176 §2, RFC 5997 §3), which a server never sends back as a reply.
func isRequestCode(code string) bool {
	switch code {
	case "Access-Request", "Accounting-Request", "Status-Server", "CoA-Request", "Disconnect-Request":
		return true
	}
	return false
}

// ownRequest reports whether radclient's output shows it reading its own request back.
func ownRequest(out string) bool {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Received" && isRequestCode(f[1]) {
			return true
		}
	}
	return false
}
