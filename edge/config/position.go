package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Options change how a file is read.
type Options struct {
	// BaseDir is the directory relative paths in the file (secret files, certificates, the cache,
	// dictionaries, the control socket) are resolved against. Empty: the file's own directory.
	// `mxedge check --base-dir /etc/mxedge -c /tmp/copy.yaml` validates a copy of the file as if it
	// were in place, which is what Ansible's `validate:` runs on a temporary copy.
	BaseDir string
}

// pos is where a key is written, and its value when that is a scalar.
type pos struct {
	line, col int
	value     string
}

// at is the error at field path, positioned at the field or its nearest parent that is written.
func at(file string, lines map[string]pos, path, msg string) *Error {
	e := &Error{File: file, Field: path, Msg: msg}
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			e.Line, e.Column = l.line, l.col
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return e
}

// SortByPosition orders es by line and column; errors without a line come first, in the order
// they were found (stable).
func (es Errors) SortByPosition() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
}

// Warnings are the problems that do not stop mxedge from starting (weak secrets, port 0,
// overlapping client prefixes), sorted by position.
func (c *Config) Warnings() Errors { return c.warns }

// FieldError is err, found by a component's validation of the options built from field, as an
// error of this file at that field's line. It wraps ErrInvalid like every configuration error, so
// check and run report it alike (exit 2).
func (c *Config) FieldError(field string, err error) *Error {
	e := at(c.Path, c.pos, field, err.Error())
	e.Err = err
	return e
}

// baseDir is the absolute directory relative paths resolve against. Absolute, so that a relative
// --config (mxedge check -c mxedge.yaml) builds the same absolute paths run needs (the control
// socket must be absolute).
func baseDir(path, base string) (string, error) {
	if base == "" {
		base = filepath.Dir(path)
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return "", fmt.Errorf("base directory %q: %w", base, err)
	}
	return abs, nil
}

// readError says why the file cannot be read, without Go's "open " prefix noise.
func readError(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file (pass the configuration with --config)"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied (run as root or as the mxedge user)"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

// syntaxErrors translates a YAML syntax error. yaml.v3 reports a tab in indentation as "found
// character that cannot start any token" at the line after it; YAML forbids tabs for indentation
// (YAML 1.2 §6.1), so the first line indented with one is named instead, with its column.
func syntaxErrors(path string, data []byte, err error) Errors {
	es := yamlErrors(path, err)
	for i, line := range bytes.Split(data, []byte("\n")) {
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if j := bytes.IndexByte(indent, '\t'); j >= 0 {
			return Errors{{File: path, Line: i + 1, Column: j + 1, Msg: "a tab character in the indentation",
				Hint: "tab characters are not allowed for indentation: indent with spaces"}}
		}
	}
	for _, e := range es {
		e.Hint = "a YAML syntax error: check the indentation and quoting on this line and the one before"
	}
	return es
}

// typeMismatch is yaml.v3's type error after the line prefix is removed.
var typeMismatch = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")

// locate fills in the field of each error that carries only a line (yaml.v3's type errors and
// Duration's), from the key written on that line, and says in words what the field takes.
func (es Errors) locate(lines map[string]pos) {
	for _, e := range es {
		// An unknown key's message names it already (unknown key "adress").
		if e.Line == 0 || e.Field != "" || strings.HasPrefix(e.Msg, "unknown key ") {
			continue
		}
		m := typeMismatch.FindStringSubmatch(e.Msg)
		best := ""
		for p, l := range lines {
			if l.line != e.Line {
				continue
			}
			// On a flow mapping's line ({name: a, port: x}) the key whose value is the one refused;
			// else the deepest path: "survivability.failback_probes", not "survivability".
			if m != nil && l.value == m[2] && lines[best].value != m[2] {
				best = p
				continue
			}
			if best != "" && m != nil && lines[best].value == m[2] && l.value != m[2] {
				continue
			}
			if len(p) > len(best) || len(p) == len(best) && p < best {
				best = p
			}
		}
		if best == "" {
			continue
		}
		e.Field, e.Column = best, lines[best].col
		if m != nil {
			e.Msg = fmt.Sprintf("%q is not %s", m[2], kindWords(m[3]))
			e.Hint = fmt.Sprintf("%s must be %s", lastKey(best), kindWords(m[3]))
		}
	}
}

// kindWords names a Go type of the File tree as an operator would.
func kindWords(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]string"):
		return "a list of strings (write [a, b] or one \"- a\" line each)"
	case strings.HasPrefix(goType, "[]"):
		return "a list (one \"- \" entry each)"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."):
		return "a mapping of keys"
	}
	switch strings.TrimPrefix(goType, "*") {
	case "int", "int64", "uint16", "uint32", "uint64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "string":
		return "a string (quote it)"
	}
	return "a " + goType
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// wellKnownSecrets are shared secrets found in vendor examples, lab guides and defaults: a
// secret an attacker tries first.
var wellKnownSecrets = []string{"testing123", "change-me", "changeme", "secret", "radius", "radsec", "password",
	"cisco", "aruba", "juniper", "mist", "admin", "test", "default", "shared-secret", "sharedsecret", "abc", "123456"}

// minSecretLen is the shortest shared secret check accepts without a warning: RFC 2865 §3 asks
// for at least 16 octets, and the secret is all that protects User-Password (RFC 2865 §5.2) and
// Message-Authenticator.
const minSecretLen = 16

// weakSecret warns about a NAS shared secret that is short or well known; the secret itself is
// never part of the message.
func (v *validator) weakSecret(path string, secret []byte) {
	if len(secret) == 0 {
		return
	}
	if slices.Contains(wellKnownSecrets, strings.ToLower(string(secret))) {
		v.warnf(path, "a well-known shared secret: anyone can guess it (RFC 2865 §3)")
		return
	}
	if len(secret) < minSecretLen {
		v.warnf(path, "shared secret shorter than %d characters (RFC 2865 §3)", minSecretLen)
	}
}

// overlappingPrefixes warns about a client prefix inside another client's: allowed (the most
// specific one wins, docs/decisions.md §1), but often a typo.
func (v *validator) overlappingPrefixes(paths []string, prefixes []netip.Prefix) {
	owner := make(map[netip.Prefix]int, len(prefixes))
	for i, p := range prefixes {
		if p.IsValid() {
			owner[p] = i
		}
	}
	for i, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		for bits := p.Bits() - 1; bits >= 0; bits-- {
			outer, err := p.Addr().Prefix(bits)
			if err != nil {
				break
			}
			if j, ok := owner[outer]; ok {
				v.warnf(paths[i], "%s is inside %s of %s: the most specific prefix wins", p, outer, paths[j])
				break
			}
		}
	}
}

// checkNASListen checks an address NASes send to: port 0 is valid for a socket but binds a port
// chosen by the kernel, one no NAS is configured for (tests use it; production should not).
func checkNASListen(v *validator, path, a string) {
	checkListen(v, path, a)
	if _, ps, err := net.SplitHostPort(a); err == nil && ps == "0" {
		v.warnf(path, "%q: port 0 binds a random port no NAS is configured for", a)
	}
}
