package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Machine output (docs/output.md). Every command that prints something a program may read takes
// `-o text|json|yaml`. A JSON document is one object whose first key is "schema"
// ("mxedge.<command>.v1"); keys are snake_case, durations are seconds with the unit in the name
// (rtt_seconds), timestamps RFC 3339 UTC strings named *_at, enumerations strings. A command that
// prints a stream (events, cache list, sessions) prints JSON Lines: one such object per line, each
// with its own "schema". YAML is the same document, key for key, in the same order (a stream is a
// YAML stream of documents separated by "---").

// Output formats.
const (
	formatText = "text"
	formatJSON = "json"
	formatYAML = "yaml"
)

// outputFlag is the -o flag of one command, with the deprecated --json it replaces.
type outputFlag struct {
	format string
	json   bool // --json (deprecated): -o json
}

// addOutputFlag registers -o/--output on cmd; legacyJSON also registers --json as a deprecated
// alias of -o json, for commands that had it.
func addOutputFlag(cmd *cobra.Command, o *outputFlag, legacyJSON bool) {
	cmd.Flags().StringVarP(&o.format, "output", "o", formatText, "output format: text, json or yaml (docs/output.md)")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{formatText, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp
	})
	if legacyJSON {
		// Not MarkDeprecated: pflag prints its notice on the command's output, which would break
		// the JSON a script reads.
		cmd.Flags().BoolVar(&o.json, "json", false, "deprecated: same as -o json")
	}
}

// get returns the chosen format, or a usage error naming the bad value.
func (o *outputFlag) get() (string, error) {
	if o.json {
		if o.format != formatText && o.format != formatJSON {
			return "", fmt.Errorf("%w: --json and -o %s contradict each other", ErrUsage, o.format)
		}
		return formatJSON, nil
	}
	switch o.format {
	case formatText, formatJSON, formatYAML:
		return o.format, nil
	}
	return "", fmt.Errorf("%w: -o %q: want text, json or yaml", ErrUsage, o.format)
}

// writeDoc writes one document as indented JSON or YAML. doc's JSON encoding defines both: YAML
// is produced from the JSON (decoded into a yaml.Node, which keeps the key order), so the two never
// disagree on a name.
func writeDoc(w io.Writer, format string, doc any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if format == formatJSON {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("output: encode: %w", err)
	}
	if format == formatJSON {
		_, err := w.Write(buf.Bytes())
		return err
	}
	return writeYAML(w, buf.Bytes(), false)
}

// streamWriter writes the documents of a stream: JSON Lines, or YAML documents after "---".
type streamWriter struct {
	w      io.Writer
	format string
	n      int
}

func (s *streamWriter) write(doc any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("output: encode: %w", err)
	}
	s.n++
	if s.format == formatJSON {
		_, err := s.w.Write(buf.Bytes())
		return err
	}
	return writeYAML(s.w, buf.Bytes(), true)
}

func writeYAML(w io.Writer, jsonDoc []byte, separator bool) error {
	var node yaml.Node
	if err := yaml.Unmarshal(jsonDoc, &node); err != nil {
		return fmt.Errorf("output: yaml: %w", err)
	}
	clearStyle(&node)
	var buf bytes.Buffer
	if separator {
		buf.WriteString("---\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return fmt.Errorf("output: yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("output: yaml: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// clearStyle turns the JSON flow style the decoder recorded into YAML's block style; strings that
// YAML would read as another type stay quoted (the encoder decides that from the tag).
func clearStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = 0
		// A YAML 1.1 reader (PyYAML) takes 12:34:56:00:00:01 for a base-60 integer: quote MACs
		// and anything else made of hex digits and colons.
		if strings.Contains(n.Value, ":") && strings.Trim(n.Value, "0123456789abcdefABCDEF:.") == "" {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
	for _, c := range n.Content {
		clearStyle(c)
	}
}

// Helpers for documents.

// atTime is an RFC 3339 UTC timestamp, or nil (JSON null) for the zero time.
func atTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// seconds is a duration in seconds, millisecond precision kept.
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Second)
}
