package survivability

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"mxedge/proxy"
	"mxedge/proxy/packet"
)

// cheapArgon2id is an argon2id PHC string at the lowest cost the parser accepts, to keep tests fast.
func cheapArgon2id(password string) string {
	salt := []byte("0123456789abcdef")
	k := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
}

func cheapBcrypt(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func testAccounts(t testing.TB) *Accounts {
	t.Helper()
	a, err := ParseAccounts(strings.NewReader("# device admins\n\nnetadmin:" + cheapArgon2id("correct horse") +
		"\nops:" + cheapBcrypt(t, "battery staple") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAccountsVerify(t *testing.T) {
	a := testAccounts(t)
	tests := []struct {
		user, password string
		ok             bool
	}{
		{"netadmin", "correct horse", true},
		{"netadmin", "correct horsE", false},
		{"netadmin", "", false},
		{"ops", "battery staple", true},
		{"ops", "correct horse", false},
		{"nobody", "correct horse", false},
		{"NETADMIN", "correct horse", false}, // user names are exact, as on the switch
	}
	for _, tt := range tests {
		if got := a.Verify(tt.user, []byte(tt.password)); got != tt.ok {
			t.Errorf("Verify(%q, %q) = %v, want %v", tt.user, tt.password, got, tt.ok)
		}
	}
	if (*Accounts)(nil).Verify("netadmin", []byte("x")) || a.Len() != 2 {
		t.Fatal("nil accounts or count")
	}
}

func TestHashArgon2idRoundTrip(t *testing.T) {
	enc := HashArgon2id([]byte("s3cret"), []byte("saltsaltsaltsalt"))
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("PHC string %q", enc)
	}
	h, err := parseHash(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !h.verify([]byte("s3cret")) || h.verify([]byte("s3creT")) {
		t.Fatal("argon2id round trip")
	}
}

func TestParseAccountsErrors(t *testing.T) {
	good := cheapArgon2id("x")
	tests := map[string]string{
		"no colon":       "netadmin\n",
		"empty user":     ":" + good + "\n",
		"duplicate":      "a:" + good + "\na:" + good + "\n",
		"plain text":     "a:password\n",
		"md5 crypt":      "a:$1$abc$def\n",
		"argon2i":        "a:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
		"old version":    "a:" + strings.Replace(good, "v=19", "v=16", 1) + "\n",
		"huge memory":    "a:" + strings.Replace(good, "m=64,", "m=4194304,", 1) + "\n",
		"zero time":      "a:" + strings.Replace(good, "t=1,", "t=0,", 1) + "\n",
		"unknown param":  "a:" + strings.Replace(good, "p=1", "p=1,x=2", 1) + "\n",
		"bad salt":       "a:$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA\n",
		"short hash":     "a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA\n",
		"bcrypt cost 15": "a:$2a$15$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\n",
		"bcrypt garbage": "a:$2a$xx\n",
		"long line":      "a:" + strings.Repeat("x", 2000) + "\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseAccounts(strings.NewReader(in)); !errors.Is(err, ErrAccounts) {
				t.Fatalf("ParseAccounts: %v, want ErrAccounts", err)
			}
		})
	}
	if _, err := LoadAccounts("/nonexistent/accounts"); !errors.Is(err, ErrAccounts) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParsePasswordPolicy(t *testing.T) {
	for _, p := range []PasswordPolicy{PasswordReject, PasswordNoAnswer, PasswordLocal} {
		if got, err := ParsePasswordPolicy(p.String()); err != nil || got != p {
			t.Fatalf("%v: %v %v", p, got, err)
		}
	}
	if _, err := ParsePasswordPolicy("allow"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestPasswordPolicies(t *testing.T) {
	now := t0
	accounts := testAccounts(t)
	table := SiteTable{
		Default: Site{Enabled: true, Password: PasswordReject},
		Sites: map[string]Site{
			"quiet": {Name: "quiet", Enabled: true, Password: PasswordNoAnswer, DefaultMABVLAN: "41"},
			"local": {Name: "local", Enabled: true, Password: PasswordLocal, Accounts: accounts},
		},
	}
	e, events := siteEngine(t, table, &now)
	pap := func(user, password string) packet.Packet { return request(t, s(1, user), s(2, password)) }
	lastReason := func() string { return (*events)[len(*events)-1].Reason }
	local := func(p packet.Packet) packet.Packet { // a login a second: under the global budget
		now = now.Add(time.Second)
		return serveFrom(t, e, "local", "cisco", p)
	}

	resp := serveFrom(t, e, "default", "cisco", pap("netadmin", "correct horse"))
	if m, _ := resp.Attr(packet.AttrReplyMessage); resp.Code() != packet.CodeAccessReject || string(m) != ReplyUnsupported {
		t.Fatalf("reject policy: %v %q", resp.Code(), m)
	}
	if resp := serveFrom(t, e, "quiet", "cisco", pap("netadmin", "correct horse")); resp != nil || lastReason() != ReasonPasswordNoAnswer {
		t.Fatalf("no-answer policy answered %v (%s)", resp, lastReason())
	}
	chap := request(t, s(1, "netadmin"), attr{packet.AttrCHAPPassword, make([]byte, 17)})
	if resp := serveFrom(t, e, "quiet", "cisco", chap); resp != nil {
		t.Fatal("no-answer policy answered CHAP")
	}
	// MAB is not a password login: the site's default VLAN, whatever the password policy.
	if resp := serveFrom(t, e, "quiet", "cisco", mabRequest(t, "02:00:00:00:00:07")); resp == nil || resp.Code() != packet.CodeAccessAccept {
		t.Fatal("MAB under no-answer not served")
	}

	if resp := local(pap("netadmin", "correct horse")); resp.Code() != packet.CodeAccessAccept || lastReason() != ReasonLocalAccount {
		t.Fatalf("local account: %v %s", resp.Code(), lastReason())
	}
	if resp := local(pap("ops", "battery staple")); resp.Code() != packet.CodeAccessAccept {
		t.Fatal("bcrypt account refused")
	}
	if resp := local(chap); resp.Code() != packet.CodeAccessReject || lastReason() != ReasonCHAPUnsupported {
		t.Fatal("CHAP under local not rejected")
	}
	for i := range loginMaxFailures {
		if resp := local(pap("netadmin", fmt.Sprint("guess", i))); resp.Code() != packet.CodeAccessReject || lastReason() != ReasonBadPassword {
			t.Fatalf("wrong password %d: %v %s", i, resp.Code(), lastReason())
		}
	}
	// Limited now, even with the right password; another user on that NAS is not.
	if resp := local(pap("netadmin", "correct horse")); resp.Code() != packet.CodeAccessReject || lastReason() != ReasonRateLimited {
		t.Fatalf("after %d failures: %v %s", loginMaxFailures, resp.Code(), lastReason())
	}
	if resp := local(pap("ops", "battery staple")); resp.Code() != packet.CodeAccessAccept {
		t.Fatal("another user limited too")
	}
	now = now.Add(loginWindow)
	if resp := local(pap("netadmin", "correct horse")); resp.Code() != packet.CodeAccessAccept {
		t.Fatal("still limited after the window")
	}
	for _, ev := range *events {
		if ev.Identity == "correct horse" || ev.Identity == "battery staple" {
			t.Fatal("a password reached an event")
		}
	}
}

func TestLoginLimiterBounded(t *testing.T) {
	var l loginLimiter
	for i := range loginMaxKeys + 100 {
		l.failed(loginKey("sw", fmt.Sprint(i)), t0)
	}
	if len(l.fail) > loginMaxKeys {
		t.Fatalf("%d keys, cap %d", len(l.fail), loginMaxKeys)
	}
	l.failed("new", t0.Add(loginWindow)) // the expired ones make room
	if len(l.fail) != 1 {
		t.Fatalf("%d keys after expiry", len(l.fail))
	}
	// At most loginMaxPerSecond checks a second in all, whatever the users.
	var g loginLimiter
	for i := range loginMaxPerSecond {
		if !g.allowed(loginKey("sw", fmt.Sprint(i)), t0) {
			t.Fatalf("check %d refused", i)
		}
	}
	if g.allowed("sw\x00another", t0.Add(999*time.Millisecond)) {
		t.Fatal("more than loginMaxPerSecond checks in one second")
	}
	if !g.allowed("sw\x00another", t0.Add(time.Second)) {
		t.Fatal("the next second refused")
	}
}

// BenchmarkAccountsVerify is the cost of one local login with the hash `mxedge passwd hash` makes.
func BenchmarkAccountsVerify(b *testing.B) {
	a, err := ParseAccounts(strings.NewReader("netadmin:" + HashArgon2id([]byte("pw"), []byte("0123456789abcdef")) + "\n"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !a.Verify("netadmin", []byte("pw")) {
			b.Fatal("no match")
		}
	}
}

// FuzzParseAccounts: an accounts file never panics the loader, and what it accepts verifies
// without panicking.
func FuzzParseAccounts(f *testing.F) {
	f.Add("netadmin:" + cheapArgon2id("x") + "\n")
	f.Add("ops:$2a$04$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\n# c\n\n")
	f.Add("a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseAccounts(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrAccounts) {
				t.Fatalf("error %v does not wrap ErrAccounts", err)
			}
			return
		}
		for user := range a.users {
			a.Verify(user, []byte("x"))
		}
	})
}

// TestSlowOnlyForLocalAccounts: only a password login checked against local accounts is too slow
// for the socket's reader (proxy.SlowFallback); MAB and the other policies are answered inline.
func TestSlowOnlyForLocalAccounts(t *testing.T) {
	now := t0
	table := SiteTable{
		Default: Site{Enabled: true, Password: PasswordReject},
		Sites:   map[string]Site{"local": {Name: "local", Enabled: true, Password: PasswordLocal, Accounts: testAccounts(t)}},
	}
	e, _ := siteEngine(t, table, &now)
	slow := func(site string, p packet.Packet) bool {
		client := &proxy.Client{Name: "sw-" + site, Site: site, Secret: proxy.Secret(secret)}
		return e.Slow(&proxy.Request{Client: client, Packet: p})
	}
	pap := request(t, s(1, "netadmin"), s(2, "correct horse"))
	if !slow("local", pap) {
		t.Error("a local-accounts password login is answered on the reader")
	}
	if slow("default", pap) {
		t.Error("a rejected password login is sent off the reader")
	}
	if slow("local", mabRequest(t, "02:00:00:00:00:07")) {
		t.Error("MAB at a local-accounts site is sent off the reader")
	}
}
