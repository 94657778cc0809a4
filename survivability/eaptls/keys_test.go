package eaptls

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"hash"
	"log/slog"
	"strings"
	"testing"
)

// TestKeyDerivationIndependent recomputes the TLS 1.2 MSK, EMSK and
// Session-Id from the master secret in the client's key log with a
// from-scratch TLS 1.2 PRF (RFC 5246 §5), so the RFC 5216 derivation does not
// rest on crypto/tls's exporter alone: this is what a supplicant derives, and
// what "MPPE keys OK" compares. (TLS 1.3 cannot be checked this way: the key
// log has no exporter secret; RFC 9190 keys are the crypto/tls exporter with
// the RFC 9190 label and context, checked for equality on both sides.)
func TestKeyDerivationIndependent(t *testing.T) {
	p := loadPKI(t)
	var keylog bytes.Buffer
	scfg := serverConfig(p)
	scfg.MaxVersion = tls.VersionTLS12
	ccfg := clientConfig(p, p.clientEC)
	ccfg.KeyLogWriter = &keylog
	cv := converse(t, scfg, ccfg)
	if cv.state != Succeeded {
		t.Fatalf("%v %v %v", cv.state, cv.srvErr, cv.cliErr)
	}
	res := cv.srv.Result()
	newHash := sha256.New
	if strings.HasSuffix(tls.CipherSuiteName(res.CipherSuite), "SHA384") {
		newHash = sha512.New384
	}
	cr, master := keyLogEntry(t, keylog.String(), "CLIENT_RANDOM")
	// Session-Id = 0x0D || client.random || server.random (RFC 5216 §2.3);
	// the server random is not in the key log, only checked for length.
	if len(res.SessionID) != 65 || res.SessionID[0] != 13 || !bytes.Equal(res.SessionID[1:33], cr) {
		t.Fatalf("session id %x, client random %x", res.SessionID, cr)
	}
	sr := res.SessionID[33:]
	km := prf12(newHash, master, "client EAP encryption", append(append([]byte(nil), cr...), sr...), 128)
	if !bytes.Equal(res.MSK[:], km[:64]) || !bytes.Equal(res.EMSK[:], km[64:]) {
		t.Errorf("MSK/EMSK differ from the independent derivation")
	}
	recv, send := MPPEKeys(res.MSK)
	if !bytes.Equal(recv, km[:32]) || !bytes.Equal(send, km[32:64]) {
		t.Error("MPPE keys are not MSK[0:32], MSK[32:64]")
	}
}

func keyLogEntry(t *testing.T, log, label string) (random, secret []byte) {
	t.Helper()
	for line := range strings.Lines(log) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == label {
			r, err1 := hex.DecodeString(f[1])
			s, err2 := hex.DecodeString(f[2])
			if err1 != nil || err2 != nil {
				t.Fatalf("key log line %q", line)
			}
			return r, s
		}
	}
	t.Fatalf("no %s in key log:\n%s", label, log)
	return nil, nil
}

// prf12 is the TLS 1.2 PRF, RFC 5246 §5: P_hash(secret, label || seed).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	seed = append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	a := seed
	var out []byte
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(nil)
		mac.Reset()
		mac.Write(a)
		mac.Write(seed)
		out = mac.Sum(out)
	}
	return out[:n]
}

func TestResultLogValueRedacts(t *testing.T) {
	r := &Result{Version: tls.VersionTLS13, OuterIdentity: "anon"}
	for i := range r.MSK {
		r.MSK[i] = 0xab
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("auth", "result", r)
	if strings.Contains(buf.String(), "abab") || strings.Contains(buf.String(), "171") {
		t.Errorf("key material in log: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "TLS 1.3") {
		t.Errorf("log: %s", buf.String())
	}
}
