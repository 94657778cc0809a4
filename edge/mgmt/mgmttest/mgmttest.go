// Package mgmttest is a controller double for tests: an httptest TLS server that implements the
// management API of docs/api/openapi.yaml (ping, register, config, clients, certificates, renew) with its own CA,
// single-use registration codes, mutual TLS for the per-edge resources, ETags and switches for
// the failures an edge must survive (controller down, skewed clock, refused edge).
//
// It exists only because no real controller can run here (STYLE.md: test doubles only for the
// cloud management API).
package mgmttest

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/edge/mgmt"
	"mxedge/pki"
)

// Code states.
const (
	CodeValid   = "valid"
	CodeExpired = "expired"
	CodeUsed    = "used"
)

// Options configure the double.
type Options struct {
	// Now is the controller's clock (ping time, Date header, issued certificates). Default
	// time.Now.
	Now func() time.Time
	// CertValidity is the validity of issued edge certificates. Default 90 days.
	CertValidity time.Duration
	// ServerNotBefore, ServerNotAfter override the controller's own certificate window
	// (clock-skew and expired-certificate tests).
	ServerNotBefore, ServerNotAfter time.Time
	// Config is the document served to edges; Clients the JSON Lines snapshot.
	Config  []byte
	Clients []byte
}

// Server is a running controller double.
type Server struct {
	URL   string
	CA    *pki.CA
	CAPEM []byte // the root that signs the controller and edge certificates: pin it with --ca

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	codes    map[string]string
	edges    map[string]bool
	config   []byte
	clients  []byte
	certs    []byte // JSON of the server certificates; nil = none (204)
	down     bool
	requests map[string]int
	lastReg  mgmt.RegisterRequest
	nextID   int
}

// New starts a controller double on 127.0.0.1 and closes it at the end of the test.
func New(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CertValidity == 0 {
		o.CertValidity = 90 * 24 * time.Hour
	}
	ca, err := pki.NewCA(pki.CAOptions{CommonName: "mgmttest controller CA", Now: o.Now})
	if err != nil {
		tb.Fatalf("mgmttest: ca: %v", err)
	}
	so := pki.IssueOptions{CommonName: "controller", DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Usage: pki.UsageServer,
		NotBefore: o.ServerNotBefore, NotAfter: o.ServerNotAfter}
	issued, err := ca.Issue(so)
	if err != nil {
		tb.Fatalf("mgmttest: server certificate: %v", err)
	}
	s := &Server{CA: ca, CAPEM: pki.EncodeCertificates(ca.Cert), opts: o,
		codes: map[string]string{}, edges: map[string]bool{}, config: o.Config, clients: o.Clients,
		requests: map[string]int{}}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: issued.DERChain(), PrivateKey: issued.Key, Leaf: issued.Cert}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
	// Handshake failures are what the edge tests provoke; they are asserted on the client side.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and closes its connections.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// AddCode registers a registration code in state (CodeValid, CodeExpired, CodeUsed).
func (s *Server) AddCode(code, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = state
}

// SetConfig replaces the configuration document served to every edge.
func (s *Server) SetConfig(doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.config = doc
}

// SetClients replaces the clients snapshot.
func (s *Server) SetClients(jsonl []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients = jsonl
}

// SetCertificates replaces the server certificates served to every edge; nil serves none (204).
func (s *Server) SetCertificates(c *mgmt.ServerCertificates) {
	var body []byte
	if c != nil {
		body, _ = json.Marshal(c) // three strings: cannot fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs = body
}

// SetDown makes every request fail with a dropped connection, as an outage would.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Forget drops an edge, so its certificate is refused (401) as after a deletion in the cloud.
func (s *Server) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.edges, id)
}

// Requests returns how many requests "METHOD /path" received (including failed ones).
func (s *Server) Requests(methodPath string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[methodPath]
}

// LastRegister returns the last register request body.
func (s *Server) LastRegister() mgmt.RegisterRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReg
}

// IssueEdge registers an edge directly (no code) and signs key's certificate valid from
// notBefore to notAfter: Syncer tests start from here, e.g. with a certificate close to expiry.
func (s *Server) IssueEdge(id string, key crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	s.mu.Lock()
	s.edges[id] = true
	s.mu.Unlock()
	issued, err := s.CA.Issue(pki.IssueOptions{CommonName: id, Usage: pki.UsageClient, NotBefore: notBefore, NotAfter: notAfter,
		Key: key})
	if err != nil {
		return nil, err
	}
	return issued.Cert, nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.Method+" "+r.URL.Path]++
	down := s.down
	s.mu.Unlock()
	if down {
		panic(http.ErrAbortHandler) // drops the connection: the client sees EOF
	}
	now := s.opts.Now()
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	switch {
	case r.URL.Path == mgmt.PathPing && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, mgmt.Ping{APIVersion: "v1", Time: now.UTC()})
	case r.URL.Path == mgmt.PathRegister && r.Method == http.MethodPost:
		s.register(w, r)
	case strings.HasPrefix(r.URL.Path, mgmt.APIVersion+"/edges/"):
		s.edge(w, r)
	default:
		writeError(w, http.StatusNotFound, mgmt.CodeNotFound, "no such resource")
	}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req mgmt.RegisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastReg = req
	switch s.codes[req.Code] {
	case "":
		writeError(w, http.StatusForbidden, mgmt.CodeInvalidCode, "unknown registration code")
		return
	case CodeExpired:
		writeError(w, http.StatusForbidden, mgmt.CodeExpiredCode, "registration code expired")
		return
	case CodeUsed:
		writeError(w, http.StatusConflict, mgmt.CodeUsedCode, "registration code already used")
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
		return
	}
	s.nextID++
	id := fmt.Sprintf("edge-%d", s.nextID)
	cert, err := s.sign(csr, id)
	if err != nil {
		writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
		return
	}
	s.codes[req.Code] = CodeUsed // single use
	s.edges[id] = true
	writeJSON(w, http.StatusCreated, mgmt.RegisterResponse{
		EdgeID:      id,
		Certificate: string(pki.EncodeCertificates(cert)),
		CABundle:    string(s.CAPEM),
		Upstreams:   []mgmt.Upstream{{Name: "cloud", Address: "127.0.0.1:2083"}},
		Config:      string(s.config),
	})
}

func (s *Server) sign(csr *x509.CertificateRequest, id string) (*x509.Certificate, error) {
	now := s.opts.Now()
	return s.CA.SignCSR(csr, pki.IssueOptions{CommonName: id, Usage: pki.UsageClient,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(s.opts.CertValidity)})
}

// edge serves /api/v1/edges/{id}/{config,clients,certificates,renew} to the edge whose certificate names id.
func (s *Server) edge(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, mgmt.APIVersion+"/edges/")
	id, res, ok := strings.Cut(rest, "/")
	if !ok {
		writeError(w, http.StatusNotFound, mgmt.CodeNotFound, "no such resource")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusUnauthorized, mgmt.CodeUnauthenticated, "client certificate required")
		return
	}
	cn := r.TLS.PeerCertificates[0].Subject.CommonName
	s.mu.Lock()
	known := s.edges[cn]
	s.mu.Unlock()
	if !known {
		writeError(w, http.StatusUnauthorized, mgmt.CodeUnauthenticated, "unknown edge certificate")
		return
	}
	if cn != id {
		writeError(w, http.StatusForbidden, mgmt.CodeForbidden, "certificate is not this edge's")
		return
	}
	switch {
	case res == "config" && r.Method == http.MethodGet:
		s.mu.Lock()
		body := s.config
		s.mu.Unlock()
		writeTagged(w, r, mgmt.MediaYAML, body)
	case res == "clients" && r.Method == http.MethodGet:
		s.mu.Lock()
		body := s.clients
		s.mu.Unlock()
		writeTagged(w, r, mgmt.MediaJSONL, body)
	case res == "certificates" && r.Method == http.MethodGet:
		s.mu.Lock()
		body := s.certs
		s.mu.Unlock()
		if body == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeTagged(w, r, mgmt.MediaJSON, body)
	case res == "renew" && r.Method == http.MethodPost:
		var req mgmt.RenewRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
			return
		}
		csr, err := pki.ParseCSR([]byte(req.CSR))
		if err != nil {
			writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
			return
		}
		// The client certificate proves this is the edge; the CSR signature proves possession of
		// the key to certify (the edge reuses its key, a controller may accept a new one).
		cert, err := s.sign(csr, id)
		if err != nil {
			writeError(w, http.StatusBadRequest, mgmt.CodeBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, mgmt.RenewResponse{Certificate: string(pki.EncodeCertificates(cert))})
	default:
		writeError(w, http.StatusNotFound, mgmt.CodeNotFound, "no such resource")
	}
}

// writeTagged answers GET with a strong ETag and If-None-Match (RFC 9110 §13.1.2).
func writeTagged(w http.ResponseWriter, r *http.Request, ctype string, body []byte) {
	tag := mgmt.ETag(body)
	w.Header().Set("ETag", tag)
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", mgmt.MediaJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, mgmt.ErrorBody{Code: code, Message: msg})
}
