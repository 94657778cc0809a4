package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration file; a larger one is certainly a mistake.
const MaxFileSize = 4 << 20

// ErrInvalid wraps every configuration error, so main can map it to its exit code.
var ErrInvalid = errors.New("config: invalid")

// Error is one problem in the file, located by line and field path.
type Error struct {
	File   string
	Line   int
	Column int    // 0 when not known; in check -o json, not in the text form (FILE:LINE: field: reason)
	Field  string // e.g. clients[2].secret
	Msg    string
	Hint   string // what to write instead, when there is more to say than Msg
	Err    error  // the component's error behind Msg (FieldError), else nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// Errors is every problem found, sorted by line and column (SortByPosition).
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Config is a decoded, validated configuration, ready to build components from.
type Config struct {
	Path  string
	File  File
	dir   string
	built *Built
	pos   map[string]pos // where each key path is written
	warns Errors
}

// Load reads, decodes and validates path. Every error names the file, line and field.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options. A file that cannot be read is an invalid configuration too
// (exit 2 from check and run alike), named with the reason.
func LoadWith(path string, o Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: readError(err)}}
	}
	return ParseWith(path, data, o)
}

var yamlLine = regexp.MustCompile(`^\s*(?:yaml: )?line (\d+): (.*)$`)

// Parse decodes and validates data as if read from path.
func Parse(path string, data []byte) (*Config, error) { return ParseWith(path, data, Options{}) }

// ParseWith is Parse with options.
func ParseWith(path string, data []byte, o Options) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxErrors(path, data, err)
	}
	lines := map[string]pos{}
	if len(root.Content) > 0 {
		if root.Content[0].Kind != yaml.MappingNode {
			return nil, Errors{{File: path, Line: root.Content[0].Line, Msg: "the document must be a mapping of keys"}}
		}
		walk(root.Content[0], "", lines)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		es := yamlErrors(path, err)
		es.locate(lines)
		es.SortByPosition()
		return nil, es
	}
	dir, err := baseDir(path, o.BaseDir)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	c := &Config{Path: path, File: f, dir: dir, pos: lines}
	v := &validator{file: path, lines: lines}
	c.validate(v)
	v.errs.SortByPosition()
	v.warns.SortByPosition()
	c.warns = v.warns
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return c, nil
}

func yamlErrors(path string, err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var es Errors
	for _, m := range msgs {
		e := &Error{File: path, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
			if k := strings.TrimPrefix(e.Msg, "field "); k != e.Msg && strings.Contains(k, " not found in type") {
				e.Msg = "unknown key " + strconv.Quote(strings.SplitN(k, " ", 2)[0])
			}
		}
		e.Msg = strings.TrimPrefix(e.Msg, "yaml: ")
		es = append(es, e)
	}
	return es
}

// walk records the position of every key path (a.b[0].c) in the document.
func walk(n *yaml.Node, path string, lines map[string]pos) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = pos{k.Line, k.Column, v.Value}
			walk(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = pos{c.Line, c.Column, c.Value}
			walk(c, p, lines)
		}
	}
}

type validator struct {
	file  string
	lines map[string]pos
	errs  Errors
	warns Errors
}

// errorf records a problem at field path; the position is that of the field or its nearest parent.
func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, at(v.file, v.lines, path, fmt.Sprintf(format, args...)))
}

// warnf records something that does not stop mxedge from starting but should be fixed (check
// prints it; check --strict fails on it; run logs it).
func (v *validator) warnf(path, format string, args ...any) {
	v.warns = append(v.warns, at(v.file, v.lines, path, fmt.Sprintf(format, args...)))
}

// UnmarshalYAML accepts Go durations plus a "d" (day) unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if x, err := strconv.ParseFloat(days, 64); err == nil {
			*d = Duration(x * float64(24*time.Hour))
			return nil
		}
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write 4s, 500ms, 7d)", n.Line, s)
	}
	*d = Duration(x)
	return nil
}

// D returns the duration, or def when unset.
func (d Duration) D(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}
