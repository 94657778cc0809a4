package localeap

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mxedge/cache"
	"mxedge/pki"
	"mxedge/proxy"
	"mxedge/proxy/packet"
	"mxedge/survivability"
	"mxedge/survivability/eaptls"
)

const nasSecret = "testing123"

// lab is the test PKI: the organisation root with two intermediates below it, a server
// certificate issued by the second intermediate (so the server flight carries a long chain), and
// client certificates for every case.
type lab struct {
	dir              string
	root, int1, int2 *pki.CA
	other            *pki.CA // an unrelated CA
	server           *pki.Issued
	rootFile         string
	crlFile          string
	clients          map[string]clientFiles
}

type clientFiles struct {
	issued    *pki.Issued
	cert, key string // PEM: cert holds the leaf and its intermediates
}

// client certificate names in lab.clients.
const (
	cliECDSA   = "ecdsa"
	cliRSA     = "rsa"
	cliChain   = "chain" // ECDSA, issued by int2: the supplicant sends leaf, int2, int1
	cliExpired = "expired"
	cliOther   = "other-ca"
	cliRevoked = "revoked"
	cliEKU     = "wrong-eku"
)

var (
	labOnce sync.Once
	labVal  *lab
	labErr  error
)

// testLab builds the lab once per test binary (RSA key generation is slow) in its own
// directory, removed by TestMain.
func testLab(tb testing.TB) *lab {
	tb.Helper()
	labOnce.Do(func() { labVal, labErr = newLab() })
	if labErr != nil {
		tb.Fatalf("lab pki: %v", labErr)
	}
	return labVal
}

func TestMain(m *testing.M) {
	code := m.Run()
	if labVal != nil {
		os.RemoveAll(labVal.dir)
	}
	os.Exit(code)
}

func newLab() (*lab, error) {
	dir, err := os.MkdirTemp("", "localeap-lab-")
	if err != nil {
		return nil, err
	}
	l := &lab{dir: dir, clients: map[string]clientFiles{}}
	if l.root, err = pki.NewCA(pki.CAOptions{CommonName: "Org Root CA"}); err != nil {
		return nil, err
	}
	if l.int1, err = pki.NewCA(pki.CAOptions{CommonName: "Org Intermediate 1", Parent: l.root, MaxPathLen: 1}); err != nil {
		return nil, err
	}
	if l.int2, err = pki.NewCA(pki.CAOptions{CommonName: "Org Intermediate 2", Parent: l.int1}); err != nil {
		return nil, err
	}
	if l.other, err = pki.NewCA(pki.CAOptions{CommonName: "Other Root CA"}); err != nil {
		return nil, err
	}
	if l.server, err = l.int2.Issue(pki.IssueOptions{CommonName: "mxedge.example.test", DNSNames: []string{"mxedge.example.test"}, Usage: pki.UsageServer}); err != nil {
		return nil, err
	}
	now := time.Now()
	specs := []struct {
		name string
		ca   *pki.CA
		o    pki.IssueOptions
	}{
		{cliECDSA, l.root, pki.IssueOptions{CommonName: "alice", Emails: []string{"alice@example.test"}, Usage: pki.UsageClient}},
		{cliRSA, l.root, pki.IssueOptions{CommonName: "bob", Usage: pki.UsageClient, KeyType: pki.KeyRSA2048}},
		{cliChain, l.int2, pki.IssueOptions{CommonName: "carol", Usage: pki.UsageClient}},
		{cliExpired, l.root, pki.IssueOptions{CommonName: "dave", Usage: pki.UsageClient, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}},
		{cliOther, l.other, pki.IssueOptions{CommonName: "eve", Usage: pki.UsageClient}},
		{cliRevoked, l.root, pki.IssueOptions{CommonName: "frank", Usage: pki.UsageClient}},
		{cliEKU, l.root, pki.IssueOptions{CommonName: "grace", Usage: pki.UsageServer}},
	}
	for _, s := range specs {
		iss, err := s.ca.Issue(s.o)
		if err != nil {
			return nil, err
		}
		cf := clientFiles{issued: iss, cert: filepath.Join(dir, s.name+".pem"), key: filepath.Join(dir, s.name+".key")}
		// The chain file holds the leaf and the intermediates (not the root): wpa_supplicant
		// sends them all (RFC 5246 §7.4.6).
		chain := []*x509.Certificate{iss.Cert}
		for _, c := range iss.Chain {
			if c != s.ca.Root() {
				chain = append(chain, c)
			}
		}
		if err := pki.WriteCertificates(cf.cert, true, chain...); err != nil {
			return nil, err
		}
		if err := pki.WriteKey(cf.key, iss.Key, true); err != nil {
			return nil, err
		}
		l.clients[s.name] = cf
	}
	l.rootFile = filepath.Join(dir, "root.pem")
	if err := pki.WriteCertificates(l.rootFile, true, l.root.Cert); err != nil {
		return nil, err
	}
	crl, err := l.root.CreateCRL(pki.CRLOptions{Number: 1, Revoked: []pki.RevokedCert{{Serial: l.clients[cliRevoked].issued.Cert.SerialNumber}}})
	if err != nil {
		return nil, err
	}
	l.crlFile = filepath.Join(dir, "root.crl")
	if err := os.WriteFile(l.crlFile, pki.EncodeCRL(crl), 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *lab) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.root.Cert)
	return p
}

func (l *lab) serverCert() tls.Certificate {
	return tls.Certificate{Certificate: l.server.DERChain(), PrivateKey: l.server.Key, Leaf: l.server.Cert}
}

// checker is a file-based CRL checker over the root's CRL, loaded.
func (l *lab) checker(tb testing.TB) *pki.Checker {
	tb.Helper()
	c, err := pki.NewChecker(pki.CheckerOptions{CRLFiles: []string{l.crlFile}, Issuers: []*x509.Certificate{l.root.Cert}, Policy: pki.HardFail})
	if err != nil {
		tb.Fatal(err)
	}
	c.Refresh(context.Background())
	return c
}

// options are handler options over the lab with revocation checking on.
func (l *lab) options(tb testing.TB) Options {
	tb.Helper()
	return Options{
		Certificates: []tls.Certificate{l.serverCert()},
		Verify:       pki.VerifyOptions{Roots: l.roots(), Revocation: l.checker(tb), RequireSHA256: true},
		Authorizer:   authorizer(tb, nil, false),
	}
}

// records is an in-memory client cache with the lookup semantics of cache.Store: MAB records by
// MAC, EAP-TLS records by identity (case-insensitive), preferring the one on the MAC.
type records []cache.Record

func (rs records) LookupMAB(mac string) (cache.Record, bool, error) {
	for _, r := range rs {
		if r.Method == cache.MethodMAB && r.MAC == mac {
			return r, true, nil
		}
	}
	return cache.Record{}, false, nil
}

func (rs records) LookupEAPTLS(identity, mac string) (cache.Record, bool, error) {
	var best cache.Record
	found := false
	for _, r := range rs {
		if r.Method == cache.MethodEAPTLS && strings.EqualFold(r.Identity, identity) && (!found || r.MAC == mac) {
			best, found = r, true
		}
	}
	return best, found, nil
}

// authorizer is the local decision over rs with the default 802.1X VLAN 100.
func authorizer(tb testing.TB, rs records, failClosed bool) *survivability.Authorizer {
	tb.Helper()
	a, err := survivability.NewAuthorizer(survivability.AuthorizerOptions{Cache: rs, DefaultDot1XVLAN: "100", FailClosed: failClosed})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// clientConfig is an in-process supplicant for client certificate name.
func (l *lab) clientConfig(name string) *eaptls.ClientConfig {
	cf := l.clients[name]
	return &eaptls.ClientConfig{
		Identity:     "anonymous@example.test",
		Certificates: []tls.Certificate{{Certificate: cf.issued.DERChain(), PrivateKey: cf.issued.Key, Leaf: cf.issued.Cert}},
		RootCAs:      l.roots(),
	}
}

// events collects NAC events.
type events struct {
	mu  sync.Mutex
	evs []Event
	ch  chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 1024)} }

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	select {
	case e.ch <- ev:
	default:
	}
}

func (e *events) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...)
}

// wait returns the next event, failing after d.
func (e *events) wait(tb testing.TB, d time.Duration) Event {
	tb.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(d):
		tb.Fatalf("no event within %v (have %+v)", d, e.all())
		return Event{}
	}
}

// nasClient is the proxy.Client the in-process NAS sends as.
func nasClient() *proxy.Client {
	return &proxy.Client{Name: "nas1", Prefix: netip.MustParsePrefix("127.0.0.1/32"), Secret: proxy.Secret(nasSecret), Vendor: "generic"}
}

// accessRequest builds a signed Access-Request carrying eap (split per RFC 3579), state and the
// calling station; withMA false leaves Message-Authenticator out.
func accessRequest(tb testing.TB, id uint8, eap, state []byte, mac string, withMA bool) *proxy.Request {
	tb.Helper()
	var auth [packet.AuthLen]byte
	rand.Read(auth[:])
	b := packet.New(nil, packet.CodeAccessRequest, id, auth[:])
	b.AddString(packet.AttrUserName, "anonymous@example.test")
	if mac != "" {
		b.AddString(packet.AttrCallingStationID, mac)
	}
	if eap != nil {
		addEAP(&b, eap)
	}
	if state != nil {
		b.Add(packet.AttrState, state)
	}
	if withMA {
		b.AddMA()
	}
	p, err := b.Finish([]byte(nasSecret), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &proxy.Request{Client: nasClient(), Packet: p, Received: time.Now()}
}

// replyEAP returns the joined EAP-Message and the State of a reply, after checking its
// authenticator and Message-Authenticator against req.
func replyEAP(tb testing.TB, req *proxy.Request, resp packet.Packet) (eap, state []byte) {
	tb.Helper()
	if resp == nil {
		tb.Fatal("no reply")
	}
	if _, err := packet.Parse(resp); err != nil {
		tb.Fatalf("reply does not parse: %v", err)
	}
	if !packet.CheckResponseAuthenticator(resp, req.Packet.Authenticator(), []byte(nasSecret)) {
		tb.Fatal("reply authenticator does not verify")
	}
	if packet.CheckResponseMA(resp, req.Packet.Authenticator(), []byte(nasSecret)) != packet.MAValid {
		tb.Fatal("reply without valid Message-Authenticator")
	}
	ra := readRequest(resp)
	return ra.eap, ra.state
}

// mppeKeys decrypts MS-MPPE-Recv-Key and MS-MPPE-Send-Key of an Access-Accept.
func mppeKeys(tb testing.TB, req *proxy.Request, resp packet.Packet) (recv, send []byte, salts [][]byte) {
	tb.Helper()
	for it := resp.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return recv, send, salts
		}
		if typ != packet.AttrVendorSpecific {
			continue
		}
		packet.SplitVSA(v, func(s packet.VSA) {
			if s.Vendor != packet.VendorMicrosoft || (s.Type != msMPPERecvKey && s.Type != msMPPESendKey) {
				return
			}
			k, err := packet.DecryptSalted(nil, s.Value, []byte(nasSecret), req.Packet.Authenticator())
			if err != nil {
				tb.Fatalf("mppe key %d: %v", s.Type, err)
			}
			salts = append(salts, s.Value[:2])
			if s.Type == msMPPERecvKey {
				recv = k
			} else {
				send = k
			}
		})
	}
}

// conversation drives one in-process EAP-TLS authentication through h.Serve as a NAS would. It
// returns the final reply, its request and the supplicant's result.
func authenticate(tb testing.TB, h *Handler, cfg *eaptls.ClientConfig, mac string) (*proxy.Request, packet.Packet, *eaptls.Result) {
	tb.Helper()
	c := eaptls.NewClient(cfg)
	defer c.Close()
	eap := c.Identity(1)
	var state []byte
	for id := uint8(0); ; id++ {
		req := accessRequest(tb, id, eap, state, mac, true)
		resp := h.Serve(req)
		if resp == nil {
			tb.Fatal("request discarded")
		}
		if resp.Code() != packet.CodeAccessChallenge {
			rep, _ := replyEAP(tb, req, resp)
			if _, _, err := c.Step(rep); err != nil && resp.Code() == packet.CodeAccessAccept {
				tb.Fatalf("supplicant on EAP-Success: %v", err)
			}
			return req, resp, c.Result()
		}
		var rep []byte
		rep, state = replyEAP(tb, req, resp)
		next, done, err := c.Step(rep)
		if done {
			tb.Fatalf("supplicant stopped mid-conversation: %v", err)
		}
		eap = next
		if id > 200 {
			tb.Fatal("conversation does not end")
		}
	}
}

// newHandler builds a handler with an event collector and runs it until the test ends.
func newHandler(tb testing.TB, o Options) (*Handler, *events) {
	tb.Helper()
	evs := newEvents()
	o.Events = evs.add
	h, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return h, evs
}

// waitGoroutines waits until the goroutine count is at most n.
func waitGoroutines(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > n {
		buf := make([]byte, 1<<16)
		tb.Errorf("goroutines: %d, want ≤ %d\n%s", got, n, buf[:runtime.Stack(buf, true)])
	}
}
