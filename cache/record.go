package cache

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Method is the authentication method the cloud authorized a client with.
type Method uint8

// Methods. The numeric values are stored in the record codec: never
// renumber them.
const (
	MethodOther  Method = 0
	MethodMAB    Method = 1
	MethodEAPTLS Method = 2
)

// String returns "other", "mab" or "eap-tls".
func (m Method) String() string {
	switch m {
	case MethodMAB:
		return "mab"
	case MethodEAPTLS:
		return "eap-tls"
	case MethodOther:
		return "other"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// ParseMethod is the inverse of Method.String.
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(s) {
	case "other", "":
		return MethodOther, nil
	case "mab":
		return MethodMAB, nil
	case "eap-tls", "eaptls":
		return MethodEAPTLS, nil
	}
	return 0, fmt.Errorf("%w: unknown method %q", ErrBadRecord, s)
}

// MarshalText implements encoding.TextMarshaler (JSON Lines export).
func (m Method) MarshalText() ([]byte, error) {
	if m > MethodEAPTLS {
		return nil, fmt.Errorf("%w: unknown method %d", ErrBadRecord, uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Method) UnmarshalText(b []byte) error {
	v, err := ParseMethod(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// attrVendorSpecific is the RADIUS type that carries vendor attributes (RFC 2865 §5.26). The cache
// knows no other attribute: which ones may be stored and replayed is survivability's policy
// (survivability.Replayable), applied before a record reaches the cache and again on replay.
const attrVendorSpecific = 26

// Attr is one reply attribute to replay. A standard attribute has Vendor 0
// and its RADIUS type in Type. A vendor-specific attribute (RFC 2865 §5.26)
// has Type 26, the IANA enterprise number in Vendor and the vendor's own type
// in VendorType. Tag is the RFC 2868 §3.1 tag of a tunnel attribute (0 for
// none; tags 1..31); Value holds the attribute value without the tag octet.
type Attr struct {
	Type       uint8
	Vendor     uint32
	VendorType uint8
	Tag        uint8
	Value      []byte
}

// Record is one authorized client: who it is, where it was seen, and the
// reply attributes the cloud gave it.
type Record struct {
	// MAC is the canonical "aa:bb:cc:dd:ee:ff" address (Calling-Station-Id),
	// empty for a client known only by identity (EAP-TLS without a MAC).
	MAC string
	// Identity is the User-Name for MAB, the certificate identity for
	// EAP-TLS (see docs/cache.md).
	Identity string
	Method   Method
	// NAS is the NAS-Identifier or NAS-IP-Address the client was seen on;
	// Site the site of that NAS. Informational.
	NAS  string
	Site string
	// Attrs are the reply attributes to replay, in reply order, kept as given.
	Attrs []Attr
	// FirstSeen is when the client was first learned; LastAuthorized the
	// time of the latest Access-Accept; Expires when the entry stops being
	// served (LastAuthorized + TTL when learned).
	FirstSeen      time.Time
	LastAuthorized time.Time
	Expires        time.Time
}

// clampTimes keeps the times of an imported or upserted record within what
// the store could have written itself at now: none in the future (a record
// dated ahead would outlive its TTL and, being "confirmed" later than any
// real client, would never be evicted), FirstSeen not after LastAuthorized,
// and Expires not beyond LastAuthorized + ttl (the entry stops being served
// then anyway, and the sweeper finds it by Expires).
func clampTimes(r Record, now time.Time, ttl time.Duration) Record {
	if r.LastAuthorized.After(now) {
		r.LastAuthorized = now
	}
	if r.FirstSeen.After(r.LastAuthorized) && !r.LastAuthorized.IsZero() {
		r.FirstSeen = r.LastAuthorized
	}
	if r.FirstSeen.After(now) {
		r.FirstSeen = now
	}
	if !r.LastAuthorized.IsZero() {
		if limit := r.LastAuthorized.Add(ttl); r.Expires.After(limit) {
			r.Expires = limit
		}
	}
	return r
}

// Limits. RADIUS attributes carry at most 253 octets (RFC 2865 §5), so no
// single field can legitimately be longer; the record count caps keep one
// record well under a bbolt page.
const (
	maxStringLen = 253
	maxAttrs     = 64
	maxValueLen  = 253
	maxTagValue  = 0x1f // RFC 2868 §3.1: tags 0x01..0x1F
)

// normalize returns r with a canonical MAC and every field checked; the
// attributes are copied, not judged. It does not touch the times.
func normalize(r Record) (Record, error) {
	if r.MAC != "" {
		m, err := NormalizeMAC(r.MAC)
		if err != nil {
			return Record{}, err
		}
		r.MAC = m
	}
	if err := validate(r); err != nil {
		return Record{}, err
	}
	r.Attrs = cloneAttrs(r.Attrs)
	return r, nil
}

// validate checks every field of r, whose MAC is canonical or empty, as
// normalize does, without copying anything: decodeRecord runs it on every
// lookup, where the attributes it decoded are already its own.
func validate(r Record) error {
	if r.MAC == "" && r.Identity == "" {
		return fmt.Errorf("%w: neither mac nor identity", ErrBadRecord)
	}
	if err := checkString("identity", r.Identity); err != nil {
		return err
	}
	if err := checkString("nas", r.NAS); err != nil {
		return err
	}
	if err := checkString("site", r.Site); err != nil {
		return err
	}
	if r.Method > MethodEAPTLS {
		return fmt.Errorf("%w: unknown method %d", ErrBadRecord, uint8(r.Method))
	}
	for i, a := range r.Attrs {
		if err := checkAttr(a); err != nil {
			return fmt.Errorf("attr %d: %w", i, err)
		}
	}
	if len(r.Attrs) > maxAttrs {
		return fmt.Errorf("%w: %d attributes, at most %d", ErrBadRecord, len(r.Attrs), maxAttrs)
	}
	return nil
}

// cloneAttrs copies attrs and their values into two allocations (nil for
// none): the values share one buffer, each capped at its own length so an
// append to one never writes into the next.
func cloneAttrs(attrs []Attr) []Attr {
	if len(attrs) == 0 {
		return nil
	}
	n := 0
	for _, a := range attrs {
		n += len(a.Value)
	}
	out := make([]Attr, len(attrs))
	buf := make([]byte, 0, n)
	for i, a := range attrs {
		start := len(buf)
		buf = append(buf, a.Value...)
		out[i] = Attr{Type: a.Type, Vendor: a.Vendor, VendorType: a.VendorType, Tag: a.Tag, Value: buf[start:len(buf):len(buf)]}
	}
	return out
}

func checkString(field, s string) error {
	if len(s) > maxStringLen {
		return fmt.Errorf("%w: %s longer than %d octets", ErrBadRecord, field, maxStringLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadRecord, field)
	}
	// NUL separates the identity from the record key in the identity index.
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains NUL", ErrBadRecord, field)
	}
	return nil
}

func checkAttr(a Attr) error {
	if a.Vendor != 0 && a.Type != attrVendorSpecific {
		return fmt.Errorf("%w: vendor %d attribute with type %d, want 26", ErrBadRecord, a.Vendor, a.Type)
	}
	if a.Vendor == 0 && (a.Type == attrVendorSpecific || a.Type == 0) {
		return fmt.Errorf("%w: standard attribute with type %d", ErrBadRecord, a.Type)
	}
	if a.Tag > maxTagValue {
		return fmt.Errorf("%w: tag %d above %d", ErrBadRecord, a.Tag, maxTagValue)
	}
	if len(a.Value) > maxValueLen {
		return fmt.Errorf("%w: value of %d octets, at most %d", ErrBadRecord, len(a.Value), maxValueLen)
	}
	return nil
}

// Key scheme (docs/cache.md). Record keys are binary and short so a million
// entries stay small:
//   - 'm' + the 6 MAC octets: the MAB (or imported "other") record of a MAC;
//   - 'e' + the 6 MAC octets + the folded identity: an EAP-TLS record, one per
//     device and certificate identity, so a MAB record of the same MAC can
//     neither shadow nor overwrite it, nor it the MAB record;
//   - 'i' + the folded identity: a client without a MAC.
const (
	keyPrefixMAC      = 'm'
	keyPrefixEAPTLS   = 'e'
	keyPrefixIdentity = 'i'
)

// foldIdentity is the identity index form: ASCII-lower-cased, because the
// certificate identities it holds (e-mail, UPN, DNS names) compare
// case-insensitively and NAS implementations differ in the case they send.
func foldIdentity(s string) string { return strings.ToLower(s) }

// recordKey returns the bbolt key of a normalized record.
func recordKey(r Record) []byte {
	if r.MAC == "" {
		return append([]byte{keyPrefixIdentity}, foldIdentity(r.Identity)...)
	}
	b, _ := parseMAC(r.MAC) // normalized by the caller
	if r.Method == MethodEAPTLS {
		return append(eapTLSPrefix(b), foldIdentity(r.Identity)...)
	}
	return macKey(b)
}

func macKey(b [macLen]byte) []byte { return appendMACKey(nil, b) }

// appendMACKey appends the record key of MAC b to dst.
func appendMACKey(dst []byte, b [macLen]byte) []byte {
	return append(append(dst, keyPrefixMAC), b[:]...)
}

// eapTLSPrefix is the key prefix of every EAP-TLS record of a MAC.
func eapTLSPrefix(b [macLen]byte) []byte {
	return append([]byte{keyPrefixEAPTLS}, b[:]...)
}

// keyString renders a record key for humans and logs.
func keyString(k []byte) string {
	if len(k) == 1+macLen && k[0] == keyPrefixMAC {
		var b [macLen]byte
		copy(b[:], k[1:])
		return formatMAC(b)
	}
	if len(k) >= 1+macLen && k[0] == keyPrefixEAPTLS {
		var b [macLen]byte
		copy(b[:], k[1:])
		return "eap-tls/" + formatMAC(b) + "/" + string(k[1+macLen:])
	}
	if len(k) > 0 && k[0] == keyPrefixIdentity {
		return string(k[1:])
	}
	return hex.EncodeToString(k) // not fmt: through an interface the key would escape to the heap
}
