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
	File  string
	Line  int
	Field string // e.g. clients[2].secret
	Msg   string
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
	return b.String()
}

func (e *Error) Unwrap() error { return ErrInvalid }

// Errors is every problem found, in file order.
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
}

// Load reads, decodes and validates path. Every error names the file, line and field.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

var yamlLine = regexp.MustCompile(`^\s*(?:yaml: )?line (\d+): (.*)$`)

// Parse decodes and validates data as if read from path.
func Parse(path string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(path, err)
	}
	lines := map[string]int{}
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
		return nil, yamlErrors(path, err)
	}
	c := &Config{Path: path, File: f, dir: dirOf(path)}
	v := &validator{file: path, lines: lines}
	c.validate(v)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return c, nil
}

func yamlErrors(path string, err error) error {
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

// walk records the line of every key path (a.b[0].c) in the document.
func walk(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			walk(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			walk(c, p, lines)
		}
	}
}

type validator struct {
	file  string
	lines map[string]int
	errs  Errors
}

// errorf records a problem at field path; the line is that of the field or its nearest parent.
func (v *validator) errorf(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; {
		if l, ok := v.lines[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
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

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return "."
}
