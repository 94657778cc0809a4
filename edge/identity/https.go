package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// HTTPSOptions configure an https sink: each batch is one POST of a Batch document.
type HTTPSOptions struct {
	// URL is the receiver's https:// URL.
	URL string
	// TLS verifies the receiver (RootCAs nil: the system roots) and, with Certificates, presents a
	// client certificate (mutual TLS). Verification is never turned off.
	TLS *tls.Config
	// TokenFile, when set, holds a bearer token (first line), read at every batch so a rotated
	// token is used without a reload.
	TokenFile string
	// Edge names this edge in each batch.
	Edge string
}

// Validate checks the options.
func (o *HTTPSOptions) Validate() error {
	u, err := url.Parse(o.URL)
	switch {
	case err != nil:
		return fmt.Errorf("identity: https url: %w", err)
	case u.Scheme != "https":
		return fmt.Errorf("identity: https url %q: scheme must be https", o.URL)
	case u.Host == "":
		return fmt.Errorf("identity: https url %q: no host", o.URL)
	case o.TLS != nil && o.TLS.InsecureSkipVerify:
		return errors.New("identity: https: server verification cannot be turned off")
	}
	if o.TokenFile != "" {
		if _, err := readToken(o.TokenFile); err != nil {
			return err
		}
	}
	return nil
}

// Batch is the document an https sink POSTs (docs/identity.md, docs/api/openapi.yaml
// IdentityBatch).
type Batch struct {
	Schema string            `json:"schema"`
	Edge   string            `json:"edge,omitempty"`
	Events []json.RawMessage `json:"events"`
}

type httpsDriver struct {
	o      HTTPSOptions
	client *http.Client
}

func newHTTPS(o HTTPSOptions) *httpsDriver {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLS != nil {
		cfg = o.TLS.Clone()
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2}
	return &httpsDriver{o: o, client: &http.Client{Transport: tr}}
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("identity: token file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("identity: token file %s is empty", path)
	}
	return line, nil
}

// maxErrorBody bounds how much of a refusal's body is kept for last_error.
const maxErrorBody = 256

func (d *httpsDriver) deliver(ctx context.Context, items []item) ([]item, error) {
	doc := Batch{Schema: Schema, Edge: d.o.Edge, Events: make([]json.RawMessage, len(items))}
	for i, it := range items {
		doc.Events[i] = it.payload
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("identity: https: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.o.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("identity: https: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mxedge-identity/1")
	if d.o.TokenFile != "" {
		tok, err := readToken(d.o.TokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("identity: https: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		// Every refusal is retried: a receiver that is misconfigured now may be fixed, and a
		// dropped event would leave a stale mapping behind.
		return nil, fmt.Errorf("identity: https: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return items, nil
}

func (d *httpsDriver) close() error {
	d.client.CloseIdleConnections()
	return nil
}
