package mgmt_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mxedge/edge/mgmt"
)

// TestClientAnswers: how the client classifies answers a controller (or a proxy in front of it)
// may give, with a bare httptest TLS server standing in.
func TestClientAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		call    func(*mgmt.Client) error
		want    error
		msg     string
	}{
		{"503 is an outage", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"unavailable","message":"maintenance"}`)
		}, getConfig, mgmt.ErrUnreachable, "maintenance"},
		{"html error page", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `<html>bad gateway</html>`)
		}, getConfig, mgmt.ErrUnreachable, "502 Bad Gateway"},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		}, register, mgmt.ErrProtocol, "302"},
		{"register answer without certificate", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"edge_id":"e"}`)
		}, register, mgmt.ErrProtocol, "required"},
		{"edge id that is not a path segment", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"edge_id":"../x","certificate":"c","ca_bundle":"c","config":"c"}`)
		}, register, mgmt.ErrProtocol, "path segment"},
		{"config too large", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, strings.Repeat("#", mgmt.MaxConfigBody+1))
		}, getConfig, mgmt.ErrProtocol, "larger than"},
		{"ping from another api version", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"api_version":"v2"}`)
		}, ping, mgmt.ErrProtocol, "v2"},
		{"renew refused", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"code":"unauthenticated","message":"unknown edge"}`)
		}, renew, mgmt.ErrUnauthorized, "unknown edge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tt.handler)
			defer srv.Close()
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			c, err := mgmt.NewClient(mgmt.ClientOptions{BaseURL: srv.URL, RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			err = tt.call(c)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v saying %q", err, tt.want, tt.msg)
			}
		})
	}
}

func getConfig(c *mgmt.Client) error {
	_, _, _, err := c.Config(context.Background(), "e", "")
	return err
}

func register(c *mgmt.Client) error {
	_, err := c.Register(context.Background(), mgmt.RegisterRequest{Code: "x"})
	return err
}

func ping(c *mgmt.Client) error {
	_, _, err := c.Ping(context.Background())
	return err
}

func renew(c *mgmt.Client) error {
	_, err := c.Renew(context.Background(), "e", []byte("csr"))
	return err
}

func TestClientOptionsValidate(t *testing.T) {
	for _, u := range []string{"", "http://controller", "https://", "://x"} {
		if _, err := mgmt.NewClient(mgmt.ClientOptions{BaseURL: u}); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}
