package mgmt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for the Client.
const (
	DefaultRequestTimeout = 30 * time.Second
	// MaxJSONBody caps a JSON answer (register, renew, errors): certificates and a configuration,
	// not a data set.
	MaxJSONBody = 4 << 20
	// MaxConfigBody caps the configuration document (config.MaxFileSize is 4 MiB).
	MaxConfigBody = 4 << 20
	// MaxSnapshotBody caps the clients snapshot: ~1 KiB a record, a million records.
	MaxSnapshotBody = 1 << 30
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// BaseURL is the controller, e.g. https://cloud.example.com (required; https only, because
	// the registration code and the configuration's secrets travel in it).
	BaseURL string
	// RootCAs verifies the controller's certificate; nil = the system roots. `--ca` pins it.
	RootCAs *x509.CertPool
	// GetClientCertificate presents the edge certificate (mutual TLS) after registration; nil
	// during registration. It is called on every handshake, so a renewed certificate is used on
	// the next connection without rebuilding the Client.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// RequestTimeout bounds one request including reading the body. Default 30s; snapshot
	// downloads get 10x.
	RequestTimeout time.Duration
	// Now is the clock used to explain certificate validity failures (default time.Now).
	Now func() time.Time
	// Transport overrides the HTTP transport (tests); its TLS settings are then the caller's.
	Transport http.RoundTripper
}

// Validate checks the options.
func (o ClientOptions) Validate() error {
	u, err := url.Parse(o.BaseURL)
	if err != nil {
		return fmt.Errorf("mgmt: cloud url %q: %w", o.BaseURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("mgmt: cloud url %q: must be https://host[:port]", o.BaseURL)
	}
	if o.RequestTimeout < 0 {
		return fmt.Errorf("mgmt: request timeout %s: must not be negative", o.RequestTimeout)
	}
	return nil
}

// Client speaks the management API (docs/api/openapi.yaml). It is safe for concurrent use.
type Client struct {
	base    string
	http    *http.Client
	timeout time.Duration
	now     func() time.Time
	tr      *http.Transport // nil when the caller supplied Transport
}

// NewClient returns a Client for o.
func NewClient(o ClientOptions) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Client{base: strings.TrimRight(o.BaseURL, "/"), timeout: o.RequestTimeout, now: o.Now}
	rt := o.Transport
	if rt == nil {
		c.tr = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			TLSClientConfig: &tls.Config{
				MinVersion:           tls.VersionTLS12,
				RootCAs:              o.RootCAs,
				GetClientCertificate: o.GetClientCertificate,
				// Verify against our own clock so a skewed clock is reported as such.
				Time: o.Now,
			},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: o.RequestTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   2,
			ForceAttemptHTTP2:     true,
		}
		rt = c.tr
	}
	c.http = &http.Client{
		Transport: rt,
		// The API never redirects; following one could send the code elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// CloseIdleConnections releases pooled connections (the Syncer calls it between rounds and on
// exit, so an idle edge holds no socket to the controller for 30 minutes).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Ping calls GET /api/v1/ping and returns the controller's clock (its body, or the Date header).
func (c *Client) Ping(ctx context.Context) (Ping, time.Time, error) {
	var p Ping
	resp, err := c.do(ctx, http.MethodGet, PathPing, nil, nil, c.timeout)
	if err != nil {
		return p, time.Time{}, err
	}
	defer resp.Body.Close()
	if err := decodeJSON(resp, http.StatusOK, &p, "ping"); err != nil {
		return p, time.Time{}, err
	}
	if p.APIVersion != "v1" {
		return p, time.Time{}, fmt.Errorf("ping: %w: api_version %q, want v1", ErrProtocol, p.APIVersion)
	}
	t := p.Time
	if t.IsZero() {
		t, _ = http.ParseTime(resp.Header.Get("Date"))
	}
	return p, t, nil
}

// Register calls POST /api/v1/register.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (*RegisterResponse, error) {
	var out RegisterResponse
	if err := c.postJSON(ctx, PathRegister, req, http.StatusCreated, &out, "register"); err != nil {
		return nil, err
	}
	if out.EdgeID == "" || out.Certificate == "" || out.CABundle == "" || out.Config == "" {
		return nil, fmt.Errorf("register: %w: edge_id, certificate, ca_bundle and config are required", ErrProtocol)
	}
	if strings.ContainsAny(out.EdgeID, "/?#%") {
		return nil, fmt.Errorf("register: %w: edge_id %q is not a path segment", ErrProtocol, out.EdgeID)
	}
	return &out, nil
}

// Renew calls POST /api/v1/edges/{id}/renew and returns the new certificate chain (PEM).
func (c *Client) Renew(ctx context.Context, id string, csrPEM []byte) ([]byte, error) {
	var out RenewResponse
	if err := c.postJSON(ctx, PathRenew(id), RenewRequest{CSR: string(csrPEM)}, http.StatusOK, &out, "renew"); err != nil {
		return nil, err
	}
	if out.Certificate == "" {
		return nil, fmt.Errorf("renew: %w: certificate is empty", ErrProtocol)
	}
	return []byte(out.Certificate), nil
}

// Config calls GET /api/v1/edges/{id}/config with If-None-Match etag. notModified reports a 304,
// in which case doc is nil.
func (c *Client) Config(ctx context.Context, id, etag string) (doc []byte, newETag string, notModified bool, err error) {
	body, newETag, notModified, err := c.get(ctx, PathConfig(id), etag, c.timeout, "config")
	if err != nil || notModified {
		return nil, etag, notModified, err
	}
	defer body.Close()
	doc, err = io.ReadAll(io.LimitReader(body, MaxConfigBody+1))
	if err != nil {
		return nil, "", false, classify("config", err, c.now())
	}
	if len(doc) > MaxConfigBody {
		return nil, "", false, fmt.Errorf("config: %w: document larger than %d bytes", ErrProtocol, MaxConfigBody)
	}
	return doc, newETag, false, nil
}

// Clients calls GET /api/v1/edges/{id}/clients with If-None-Match etag and returns the JSON Lines
// snapshot as a stream the caller must close (nil on 304). It is capped at MaxSnapshotBody.
func (c *Client) Clients(ctx context.Context, id, etag string) (body io.ReadCloser, newETag string, notModified bool, err error) {
	body, newETag, notModified, err = c.get(ctx, PathClients(id), etag, 10*c.timeout, "clients")
	if err != nil || notModified {
		return nil, etag, notModified, err
	}
	return limitedBody{io.LimitReader(body, MaxSnapshotBody), body}, newETag, false, nil
}

// Certificates calls GET /api/v1/edges/{id}/certificates with If-None-Match etag. notModified
// reports a 304; a 204 (the controller holds no server certificates for this edge) returns nil
// and no error.
func (c *Client) Certificates(ctx context.Context, id, etag string) (certs *ServerCertificates, newETag string, notModified bool, err error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	resp, err := c.do(ctx, http.MethodGet, PathCertificates(id), h, nil, c.timeout)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, true, nil
	case http.StatusNoContent:
		return nil, "", false, nil
	}
	var out ServerCertificates
	if err := decodeJSON(resp, http.StatusOK, &out, "certificates"); err != nil {
		return nil, "", false, err
	}
	return &out, resp.Header.Get("ETag"), false, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

func (c *Client) get(ctx context.Context, path, etag string, timeout time.Duration, op string) (io.ReadCloser, string, bool, error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	resp, err := c.do(ctx, http.MethodGet, path, h, nil, timeout)
	if err != nil {
		return nil, "", false, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		resp.Body.Close()
		return nil, etag, true, nil
	case http.StatusOK:
		return resp.Body, resp.Header.Get("ETag"), false, nil
	}
	defer resp.Body.Close()
	return nil, "", false, fmt.Errorf("%s: %w", op, apiError(resp))
}

func (c *Client) postJSON(ctx context.Context, path string, in any, want int, out any, op string) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	h := http.Header{"Content-Type": {MediaJSON}}
	resp, err := c.do(ctx, http.MethodPost, path, h, b, c.timeout)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeJSON(resp, want, out, op)
}

// do sends one request. The timeout covers the whole exchange including the body read: the
// context is cancelled when the returned body is closed (see timeoutBody).
func (c *Client) do(ctx context.Context, method, path string, h http.Header, body []byte, timeout time.Duration) (*http.Response, error) {
	op := strings.ToLower(method) + " " + path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept", MediaJSON+", "+MediaYAML+", "+MediaJSONL)
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, classify(op, err, c.now())
	}
	resp.Body = timeoutBody{resp.Body, cancel}
	return resp, nil
}

type timeoutBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b timeoutBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func decodeJSON(resp *http.Response, want int, out any, op string) error {
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %w", op, apiError(resp))
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, MaxJSONBody))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrProtocol, err)
	}
	return nil
}

// apiError builds an APIError from a non-2xx answer; a body that is not ErrorBody JSON still
// yields the status (a proxy's HTML error page, say).
func apiError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode}
	var b ErrorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &b) == nil {
		e.Code, e.Message = b.Code, b.Message
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	return e
}
