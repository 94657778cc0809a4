package cli

// Machine output of check and doctor: versioned documents (schema "mxedge.check.v1",
// "mxedge.doctor.v1") with snake_case keys, described in docs/operations.md and pinned by the
// golden files edge/cli/testdata/check_*.golden and doctor_*.golden. A new key may be added to a
// version; renaming or removing one makes a new version.

import (
	"errors"
	"fmt"
	"io"

	"mxedge/edge/config"
)

const (
	checkSchema  = "mxedge.check.v1"
	doctorSchema = "mxedge.doctor.v1"
)

// checkReport is `mxedge check -o json`.
type checkReport struct {
	Schema string `json:"schema" yaml:"schema"`
	File   string `json:"file" yaml:"file"`
	Valid  bool   `json:"valid" yaml:"valid"`
	// NotConfigured: the file serves nobody yet (exit 78); Valid is false.
	NotConfigured bool         `json:"not_configured" yaml:"not_configured"`
	Errors        []checkIssue `json:"errors" yaml:"errors"`
	Warnings      []checkIssue `json:"warnings" yaml:"warnings"`
}

// checkIssue is one error or warning. Line and column count from 1; 0 when not known.
type checkIssue struct {
	File    string `json:"file" yaml:"file"`
	Line    int    `json:"line" yaml:"line"`
	Column  int    `json:"column" yaml:"column"`
	Field   string `json:"field" yaml:"field"`
	Message string `json:"message" yaml:"message"`
	Hint    string `json:"hint" yaml:"hint"`
}

func (i checkIssue) String() string {
	e := config.Error{File: i.File, Line: i.Line, Field: i.Field, Msg: i.Message, Hint: i.Hint}
	return e.Error()
}

// issues flattens an error from config.Load or edge.Check into positioned issues.
func issues(err error) []checkIssue {
	out := []checkIssue{}
	var es config.Errors
	var e *config.Error
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			out = append(out, issue(e))
		}
	case errors.As(err, &e):
		out = append(out, issue(e))
	case err != nil:
		out = append(out, checkIssue{Message: err.Error()})
	}
	return out
}

func issue(e *config.Error) checkIssue {
	return checkIssue{File: e.File, Line: e.Line, Column: e.Column, Field: e.Field, Message: e.Msg, Hint: e.Hint}
}

// reportEncoder returns the encoder for -o FORMAT (writeDoc, the one encoder of every machine
// document); nil for text.
func reportEncoder(format string) (func(io.Writer, any) error, error) {
	switch format {
	case "", "text":
		return nil, nil
	case formatJSON, "yaml":
		return func(w io.Writer, v any) error { return writeDoc(w, format, v) }, nil
	}
	return nil, fmt.Errorf("%w: --output %q is not one of text, json, yaml", ErrUsage, format)
}
