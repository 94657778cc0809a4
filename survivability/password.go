package survivability

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// PasswordPolicy is what a password login (PAP or CHAP that is not MAB) gets while the cloud is
// unreachable (docs/survivability.md, "Password logins during an outage").
type PasswordPolicy uint8

const (
	// PasswordReject answers Access-Reject: the user is told at once, and the NAS does not fall
	// back to its own accounts (a switch only does when the server does not answer).
	PasswordReject PasswordPolicy = iota
	// PasswordNoAnswer sends nothing, so the NAS times out and uses its own fallback (local
	// accounts, a critical VLAN). The request is dropped with a counted reason.
	PasswordNoAnswer
	// PasswordLocal checks PAP logins against local device-admin accounts (Accounts); CHAP cannot
	// be checked against a password hash and is rejected.
	PasswordLocal
)

// Names of the policies as written in the configuration file.
var passwordPolicyNames = [...]string{PasswordReject: "reject", PasswordNoAnswer: "no-answer", PasswordLocal: "local"}

func (p PasswordPolicy) String() string {
	if int(p) < len(passwordPolicyNames) {
		return passwordPolicyNames[p]
	}
	return "PasswordPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParsePasswordPolicy reads "reject", "no-answer" or "local".
func ParsePasswordPolicy(s string) (PasswordPolicy, error) {
	for i, n := range passwordPolicyNames {
		if s == n {
			return PasswordPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("survivability: password policy %q is not one of reject, no-answer, local", s)
}

// Reasons of password decisions (Event.Reason).
const (
	ReasonPasswordReject   = "unsupported-method" // policy reject (the name it had before the policy existed)
	ReasonPasswordNoAnswer = "password-no-answer" // policy no-answer: left to the NAS's own fallback
	ReasonLocalAccount     = "local-account"      // the password matched a local account
	ReasonBadPassword      = "bad-password"       // no such account, or the password did not match
	ReasonRateLimited      = "rate-limited"       // too many failures for this NAS and user
	ReasonCHAPUnsupported  = "chap-unsupported"   // policy local, but CHAP cannot be checked against a hash
	ReasonSiteDisabled     = "site-disabled"      // survivability is off for the NAS's site: the no-upstream reject
	// ReasonSiteDisabledNoAnswer: survivability is off for the NAS's site, no_upstream: drop.
	ReasonSiteDisabledNoAnswer = "site-disabled-no-answer"
)

// Unanswered reports whether a local decision of reason sends the NAS nothing (the request is a
// counted drop): it is an event, not an Access-Accept or Access-Reject.
func Unanswered(reason string) bool {
	return reason == ReasonPasswordNoAnswer || reason == ReasonSiteDisabledNoAnswer
}

// Bounds on the hashes accepted in an accounts file: verifying one runs on the request path, so a
// hash whose cost would stall it is a configuration error.
const (
	maxArgon2Memory  = 256 * 1024 // KiB
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	maxBcryptCost    = 14
	maxAccounts      = 10000
	maxAccountLine   = 1024
)

// ErrAccounts wraps every problem in an accounts file.
var ErrAccounts = errors.New("survivability: accounts")

// Accounts are local device-admin accounts: user name to password hash. The zero value has none.
type Accounts struct {
	Path  string
	users map[string]passwordHash
}

// passwordHash verifies a password against one stored hash.
type passwordHash interface {
	verify(password []byte) bool
}

// LoadAccounts reads an accounts file: one "user:hash" per line, blank lines and lines starting
// with # ignored, the hash an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash, base64
// without padding) or a bcrypt hash ($2a$, $2b$, $2y$).
func LoadAccounts(path string) (*Accounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAccounts, err)
	}
	defer f.Close()
	a, err := ParseAccounts(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.Path = path
	return a, nil
}

// ParseAccounts reads accounts in the LoadAccounts format.
func ParseAccounts(r io.Reader) (*Accounts, error) {
	a := &Accounts{users: map[string]passwordHash{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxAccountLine), maxAccountLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, enc, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%w: line %d: want user:hash", ErrAccounts, n)
		}
		if _, dup := a.users[user]; dup {
			return nil, fmt.Errorf("%w: line %d: user %q listed twice", ErrAccounts, n, user)
		}
		h, err := parseHash(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: user %q: %w", ErrAccounts, n, user, err)
		}
		if len(a.users) == maxAccounts {
			return nil, fmt.Errorf("%w: more than %d accounts", ErrAccounts, maxAccounts)
		}
		a.users[user] = h
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAccounts, err)
	}
	return a, nil
}

// Len is the number of accounts.
func (a *Accounts) Len() int {
	if a == nil {
		return 0
	}
	return len(a.users)
}

// Verify reports whether password is user's. An unknown user costs a verification too, so the
// answer time does not say which users exist.
func (a *Accounts) Verify(user string, password []byte) bool {
	var h passwordHash
	ok := false
	if a != nil {
		h, ok = a.users[user]
	}
	if !ok {
		decoy.verify(password)
		return false
	}
	return h.verify(password)
}

// decoy is verified for unknown users (bcrypt of a random string at the default cost).
var decoy = bcryptHash("$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy")

func parseHash(s string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("bcrypt: %w", err)
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("bcrypt cost %d above %d", cost, maxBcryptCost)
		}
		return bcryptHash(s), nil
	}
	return nil, errors.New("not an argon2id or bcrypt hash")
}

type bcryptHash string

func (h bcryptHash) verify(password []byte) bool {
	return bcrypt.CompareHashAndPassword([]byte(h), password) == nil
}

// argon2idHash is an argon2id hash (RFC 9106) with its parameters.
type argon2idHash struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2id reads the PHC string format: $argon2id$v=19$m=65536,t=3,p=4$salt$hash.
func parseArgon2id(s string) (*argon2idHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, errors.New("argon2id: want $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	h := &argon2idHash{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("argon2id: parameter %q", kv)
		}
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("argon2id: parameter %q", kv)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id: unknown parameter %q", k)
		}
	}
	switch {
	case h.time < 1 || h.time > maxArgon2Time:
		return nil, fmt.Errorf("argon2id: t=%d outside 1..%d", h.time, maxArgon2Time)
	case h.threads < 1 || h.threads > maxArgon2Threads:
		return nil, fmt.Errorf("argon2id: p=%d outside 1..%d", h.threads, maxArgon2Threads)
	case h.memory < 8*uint32(h.threads) || h.memory > maxArgon2Memory:
		return nil, fmt.Errorf("argon2id: m=%d outside %d..%d KiB", h.memory, 8*uint32(h.threads), maxArgon2Memory)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id: salt is not base64 of at least 8 bytes")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return nil, errors.New("argon2id: hash is not base64 of 16 to 64 bytes")
	}
	return h, nil
}

func (h *argon2idHash) verify(password []byte) bool {
	k := argon2.IDKey(password, h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

// HashArgon2id returns the PHC string of password under argon2id with RFC 9106 §4's second
// recommended parameters (m=64 MiB, t=3, p=4) and salt (16 random bytes).
func HashArgon2id(password, salt []byte) string {
	const memory, time, threads, keyLen = 64 * 1024, 3, 4, 32
	k := argon2.IDKey(password, salt, time, memory, threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memory, time, threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
}

// HashBcrypt returns the bcrypt hash of password at bcrypt's default cost (10).
func HashBcrypt(password []byte) (string, error) {
	h, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("survivability: bcrypt: %w", err)
	}
	return string(h), nil
}

// Login rate limiting: after loginMaxFailures failures of one user on one NAS within
// loginWindow, further attempts are refused unchecked until the window has passed.
// Whatever the user names, at most loginMaxPerSecond passwords are checked per second in all: a
// check runs on the goroutine that reads the NAS's socket and takes about 110 ms for the argon2id
// hash `mxedge passwd hash` makes (BenchmarkAccountsVerify, 2 cores), so this keeps the socket
// read more than half of every second during an outage.
const (
	loginMaxFailures  = 5
	loginWindow       = time.Minute
	loginMaxKeys      = 4096 // bounds the table: a flood of user names cannot grow it
	loginMaxPerSecond = 4
)

// loginLimiter counts failed local logins per NAS and user, and checks in all per second.
type loginLimiter struct {
	mu     sync.Mutex
	fail   map[string]loginFailures
	second time.Time // the second checks counts the checks of
	checks int
}

type loginFailures struct {
	n     int
	first time.Time
}

func loginKey(nas, user string) string { return nas + "\x00" + user }

// allowed reports whether key may try a password at now, and counts the check.
func (l *loginLimiter) allowed(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.fail[key]; ok {
		if now.Sub(f.first) >= loginWindow {
			delete(l.fail, key)
		} else if f.n >= loginMaxFailures {
			return false
		}
	}
	if sec := now.Truncate(time.Second); !sec.Equal(l.second) {
		l.second, l.checks = sec, 0
	}
	if l.checks >= loginMaxPerSecond {
		return false
	}
	l.checks++
	return true
}

// failed records a failure of key at now.
func (l *loginLimiter) failed(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail == nil {
		l.fail = map[string]loginFailures{}
	}
	f, ok := l.fail[key]
	if !ok || now.Sub(f.first) >= loginWindow {
		if !ok && len(l.fail) >= loginMaxKeys {
			for k, v := range l.fail {
				if now.Sub(v.first) >= loginWindow {
					delete(l.fail, k)
				}
			}
			if len(l.fail) >= loginMaxKeys {
				// Still full of live failures: refuse to forget any, count this one nowhere. The
				// keys already present stay limited; a new key is checked normally.
				return
			}
		}
		f = loginFailures{first: now}
	}
	f.n++
	l.fail[key] = f
}

// succeeded clears key's failures.
func (l *loginLimiter) succeeded(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fail, key)
}

// password decides a password login (PAP or CHAP, not MAB) under site's policy.
func (e *Engine) password(req *proxy.Request, c Classification, site Site) (packet.Packet, error) {
	method := "pap"
	if req.Packet.Has(packet.AttrCHAPPassword) {
		method = "chap"
	}
	ev := Event{Method: method, MAC: c.MAC, Identity: c.UserName}
	switch {
	case site.Password == PasswordNoAnswer:
		ev.Reason = ReasonPasswordNoAnswer
		e.event(req, ev)
		return nil, nil // Reply(nil): dropped and counted, the NAS times out
	case site.Password != PasswordLocal:
		ev.Reason = ReasonPasswordReject
		e.event(req, ev)
		return e.reject(req, ReplyUnsupported)
	case method == "chap":
		ev.Reason = ReasonCHAPUnsupported
		e.event(req, ev)
		return e.reject(req, "")
	}
	now := e.opts.Now()
	key := loginKey(req.Client.Name, c.UserName)
	if !e.logins.allowed(key, now) {
		ev.Reason = ReasonRateLimited
		e.event(req, ev)
		return e.reject(req, "")
	}
	raw, _ := req.Packet.Attr(packet.AttrUserPassword)
	pw, err := packet.DecryptUserPassword(nil, raw, req.Client.Secret, req.Packet.Authenticator())
	// RFC 2865 §5.2: the password is padded with NULs to a multiple of 16 octets.
	if err != nil || !site.Accounts.Verify(c.UserName, bytes.TrimRight(pw, "\x00")) {
		e.logins.failed(key, now)
		ev.Reason = ReasonBadPassword
		e.event(req, ev)
		return e.reject(req, "")
	}
	e.logins.succeeded(key)
	ev.Allowed, ev.Reason = true, ReasonLocalAccount
	e.event(req, ev)
	b := packet.NewResponse(nil, req.Packet, packet.CodeAccessAccept)
	return b.Finish(req.Client.Secret, req.Packet.Authenticator())
}
