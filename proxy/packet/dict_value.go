package packet

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors of ParseAttr and ParseValue.
var (
	ErrUnknownAttr = errors.New("packet: unknown attribute")
	ErrAttrSyntax  = errors.New("packet: attribute syntax")
	ErrAttrValue   = errors.New("packet: invalid attribute value")
)

// Text rendering follows what FreeRADIUS 3.2's radclient prints, so that an operator can compare
// mxedge's output with radclient -x line for line: "Tunnel-Type:0 = VLAN",
// `Filter-Id = "a\"b"`, "Class = 0x0102", "Attr-26.14823.250 = 0x0000012c" for an attribute the
// dictionary does not know, and the numbered form with octets for a value whose length does not
// fit its type.

// dateLayout is radclient's date format (strftime "%b %e %Y %H:%M:%S %Z"), in UTC.
const dateLayout = "Jan _2 2006 15:04:05 MST"

// Name returns the name radclient prints for attribute (vendor, code): the dictionary name or
// "Attr-81", "Attr-26.14823.250".
func (d *Dictionary) Name(vendor uint32, code uint8) string {
	if a, ok := d.Attr(vendor, code); ok {
		return a.Name
	}
	return AttrDef{Vendor: vendor, Code: code}.unknownName()
}

func (a AttrDef) unknownName() string { return "Attr-" + a.oid() }

// AppendText appends `Name = value` for one attribute as it is on the wire: vendor 0 and the
// RADIUS type for a standard attribute (for 241–244 the value starts with the extended type), or
// a vendor and its sub-attribute type; v holds the tag octet of a tagged attribute. Encrypted
// values are printed as octets (decrypting needs the secret).
func (d *Dictionary) AppendText(dst []byte, vendor uint32, code uint8, v []byte) []byte {
	var a AttrDef
	ok := false
	if vendor == 0 && code >= firstExtended && code <= lastExtended && len(v) > 0 && v[0] != 0 {
		a, ok = d.ExtAttr(code, v[0])
		if !ok {
			a = AttrDef{Code: code, Ext: v[0]}
		}
		v = v[1:]
	} else if a, ok = d.Attr(vendor, code); !ok {
		a = AttrDef{Vendor: vendor, Code: code}
	}
	if !ok || a.Encrypt != SchemeNone {
		return appendOctetsAttr(dst, a, ok, v)
	}
	tag, val, tagOK := a.SplitTag(v)
	mark := len(dst)
	dst = append(dst, a.Name...)
	if a.Tagged {
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, uint64(tag), 10)
	}
	dst = append(dst, " = "...)
	if tagOK {
		if out, ok := a.AppendValue(dst, val); ok {
			return out
		}
	}
	return appendOctetsAttr(dst[:mark], a, false, v)
}

func appendOctetsAttr(dst []byte, a AttrDef, known bool, v []byte) []byte {
	if known {
		dst = append(dst, a.Name...)
	} else {
		dst = append(dst, "Attr-"...)
		dst = append(dst, a.oid()...)
	}
	dst = append(dst, " = 0x"...)
	return hex.AppendEncode(dst, v)
}

// SplitTag separates the RFC 2868 §3.1 tag from a tagged attribute's wire value: an integer always
// has a tag octet before its 3 value octets; a string has one when its first octet is below 0x20
// and more octets follow (FreeRADIUS's rule). An untagged attribute returns tag 0 and v. ok is
// false for a tagged integer that is not 4 octets.
func (a AttrDef) SplitTag(v []byte) (tag uint8, value []byte, ok bool) {
	if !a.Tagged {
		return 0, v, true
	}
	if a.Type == TypeInteger {
		if len(v) != 4 {
			return 0, v, false
		}
		return v[0], v[1:], true
	}
	if len(v) > 1 && v[0] < 0x20 {
		return v[0], v[1:], true
	}
	return 0, v, true
}

// AppendTag is the inverse of SplitTag: it appends the wire value of value with tag.
func (a AttrDef) AppendTag(dst []byte, tag uint8, value []byte) []byte {
	if a.needsTagOctet(tag, value) {
		dst = append(dst, tag)
	}
	return append(dst, value...)
}

// needsTagOctet: an integer always carries its tag; a string carries a non-zero tag, and tag 0
// when its value would otherwise be read as starting with a tag.
func (a AttrDef) needsTagOctet(tag uint8, value []byte) bool {
	return a.Tagged && (a.Type == TypeInteger || tag != 0 || len(value) > 1 && value[0] < 0x20)
}

// AppendValue appends the radclient text of value (without its tag octet; a tagged integer is its
// 3 value octets). ok is false, and dst unchanged, when the length does not fit the type.
func (a AttrDef) AppendValue(dst, v []byte) ([]byte, bool) {
	switch a.Type {
	case TypeString:
		return appendQuoted(dst, v), true
	case TypeIPAddr:
		if len(v) == 4 {
			return netip.AddrFrom4([4]byte(v)).AppendTo(dst), true
		}
	case TypeInteger:
		if a.Tagged && len(v) == 3 {
			return a.appendNumber(dst, uint64(v[0])<<16|uint64(v[1])<<8|uint64(v[2])), true
		}
		if len(v) == 4 {
			return a.appendNumber(dst, uint64(binary.BigEndian.Uint32(v))), true
		}
	case TypeByte:
		if len(v) == 1 {
			return a.appendNumber(dst, uint64(v[0])), true
		}
	case TypeShort:
		if len(v) == 2 {
			return a.appendNumber(dst, uint64(binary.BigEndian.Uint16(v))), true
		}
	case TypeInteger64:
		if len(v) == 8 {
			return strconv.AppendUint(dst, binary.BigEndian.Uint64(v), 10), true
		}
	case TypeSigned:
		if len(v) == 4 {
			return strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(v))), 10), true
		}
	case TypeDate:
		if len(v) == 4 {
			dst = append(dst, '"')
			dst = time.Unix(int64(binary.BigEndian.Uint32(v)), 0).UTC().AppendFormat(dst, dateLayout)
			return append(dst, '"'), true
		}
	case TypeIPv6Addr:
		if len(v) == 16 {
			return netip.AddrFrom16([16]byte(v)).AppendTo(dst), true
		}
	case TypeIPv6Prefix:
		// RFC 3162 §2.3: reserved, prefix length, then as many prefix octets as needed.
		if len(v) >= 2 && len(v) <= 18 && v[0] == 0 && v[1] <= 128 && len(v)-2 >= (int(v[1])+7)/8 {
			var b [16]byte
			copy(b[:], v[2:])
			dst = netip.AddrFrom16(b).AppendTo(dst)
			dst = append(dst, '/')
			return strconv.AppendUint(dst, uint64(v[1]), 10), true
		}
	case TypeIPv4Prefix:
		// RFC 6572 §4.2: reserved, prefix length, 4 octets.
		if len(v) == 6 && v[0] == 0 && v[1] <= 32 {
			dst = netip.AddrFrom4([4]byte(v[2:])).AppendTo(dst)
			dst = append(dst, '/')
			return strconv.AppendUint(dst, uint64(v[1]), 10), true
		}
	case TypeIfID:
		if len(v) == 8 {
			for i := 0; i < 8; i += 2 {
				if i > 0 {
					dst = append(dst, ':')
				}
				dst = strconv.AppendUint(dst, uint64(binary.BigEndian.Uint16(v[i:])), 16)
			}
			return dst, true
		}
	case TypeEther:
		if len(v) == 6 {
			for i, c := range v {
				if i > 0 {
					dst = append(dst, ':')
				}
				dst = hex.AppendEncode(dst, []byte{c})
			}
			return dst, true
		}
	default: // octets, abinary, tlv, vsa
		if a.Size != 0 && len(v) != int(a.Size) {
			return dst, false
		}
		dst = append(dst, "0x"...)
		return hex.AppendEncode(dst, v), true
	}
	return dst, false
}

func (a AttrDef) appendNumber(dst []byte, n uint64) []byte {
	if n <= math.MaxUint32 {
		if name, ok := a.ValueName(uint32(n)); ok {
			return append(dst, name...)
		}
	}
	return strconv.AppendUint(dst, n, 10)
}

// appendQuoted quotes v as FreeRADIUS does: backslash escapes for \ " and \n \r \t, valid UTF-8
// as is, every other control or invalid octet as a 3-digit octal escape.
func appendQuoted(dst, v []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == '\\' || c == '"':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		case c >= 0x80:
			if r, n := utf8.DecodeRune(v[i:]); r != utf8.RuneError || n > 1 {
				dst = append(dst, v[i:i+n]...)
				i += n
				continue
			}
			dst = append(dst, '\\', '0'+c>>6, '0'+c>>3&7, '0'+c&7)
		default:
			dst = append(dst, '\\', '0'+c>>6, '0'+c>>3&7, '0'+c&7)
		}
		i++
	}
	return append(dst, '"')
}

// ParseAttr parses one attribute as radclient reads it, `Name = value` or `Name:tag = value`, and
// returns its definition and wire value (tag octet included; for 241–244 the extended type first;
// not encrypted: a builder hides values whose def.Encrypt says so). Attributes the dictionary does
// not know are accepted in radclient's numbered form with an octets value ("Attr-26.9.250 = 0x01").
func (d *Dictionary) ParseAttr(dst []byte, s string) (AttrDef, []byte, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return AttrDef{}, nil, fmt.Errorf("%w: %q: want Name = value", ErrAttrSyntax, s)
	}
	name, val = strings.TrimSpace(name), strings.TrimSpace(val)
	name = strings.TrimSpace(strings.TrimSuffix(name, ":")) // radclient also reads ":="
	name, tagText, hasTag := strings.Cut(name, ":")
	a, known := d.ByName(name)
	if !known {
		u, ok := parseUnknownName(name)
		if !ok {
			return AttrDef{}, nil, fmt.Errorf("%w %q", ErrUnknownAttr, name)
		}
		a = u
	}
	var tag uint8
	if hasTag {
		n, err := strconv.ParseUint(tagText, 10, 8)
		// RFC 2868 §3.1: tags are 0x01–0x1F; an integer's tag octet is always present, so any
		// octet read there prints and parses back.
		if !a.Tagged || err != nil || n > 0x1f && a.Type != TypeInteger {
			return AttrDef{}, nil, fmt.Errorf("%w: %q: tag %q (a tag is 0–31 on an attribute that has one)", ErrAttrSyntax, s, tagText)
		}
		tag = uint8(n)
	}
	start := len(dst)
	if a.Ext != 0 {
		dst = append(dst, a.Ext)
	}
	vstart := len(dst)
	out, err := a.ParseValue(dst, val)
	if err != nil {
		return AttrDef{}, nil, fmt.Errorf("%s: %w", a.Name, err)
	}
	if a.needsTagOctet(tag, out[vstart:]) {
		out = slices.Insert(out, vstart, tag)
	}
	return a, out[start:], nil
}

// parseUnknownName reads radclient's numbered names: Attr-N, Attr-26.VENDOR.N, Attr-241.EXT.
func parseUnknownName(name string) (AttrDef, bool) {
	rest, ok := strings.CutPrefix(name, "Attr-")
	if !ok {
		return AttrDef{}, false
	}
	parts := strings.Split(rest, ".")
	num := func(s string, bits int) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, bits)
		return n, err == nil
	}
	switch len(parts) {
	case 1:
		if c, ok := num(parts[0], 8); ok && c != 0 && c != uint64(AttrVendorSpecific) {
			return AttrDef{Name: name, Code: uint8(c)}, true
		}
	case 2:
		c, ok1 := num(parts[0], 8)
		e, ok2 := num(parts[1], 8)
		if ok1 && ok2 && c >= firstExtended && c <= lastExtended && e != 0 {
			return AttrDef{Name: name, Code: uint8(c), Ext: uint8(e)}, true
		}
	case 3:
		v, ok1 := num(parts[1], 32)
		c, ok2 := num(parts[2], 8)
		if parts[0] == "26" && ok1 && ok2 && v != 0 {
			return AttrDef{Name: name, Vendor: uint32(v), Code: uint8(c)}, true
		}
	}
	return AttrDef{}, false
}

// ParseValue appends the wire form of the radclient text s (without a tag octet; a tagged integer
// gives its 3 value octets): a quoted or bare string, a named or decimal integer, an address, a
// prefix, a date as radclient prints it or in seconds, 0x-prefixed octets.
func (a AttrDef) ParseValue(dst []byte, s string) ([]byte, error) {
	bad := func(what string) ([]byte, error) {
		return nil, fmt.Errorf("%w: %q is not %s", ErrAttrValue, s, what)
	}
	switch a.Type {
	case TypeString:
		if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') {
			return unquote(dst, s)
		}
		return append(dst, s...), nil
	case TypeIPAddr:
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() {
			return bad("an IPv4 address")
		}
		b := ip.As4()
		return append(dst, b[:]...), nil
	case TypeInteger, TypeByte, TypeShort:
		n, ok := a.parseNumber(s)
		switch {
		case !ok:
			return bad("a number or a value name of " + a.Name)
		case a.Type == TypeByte && n <= math.MaxUint8:
			return append(dst, byte(n)), nil
		case a.Type == TypeShort && n <= math.MaxUint16:
			return binary.BigEndian.AppendUint16(dst, uint16(n)), nil
		case a.Type == TypeInteger && a.Tagged && n <= 0xffffff:
			return append(dst, byte(n>>16), byte(n>>8), byte(n)), nil
		case a.Type == TypeInteger && !a.Tagged && n <= math.MaxUint32:
			return binary.BigEndian.AppendUint32(dst, uint32(n)), nil
		}
		return bad("in range for " + a.Type.String())
	case TypeInteger64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad("a 64-bit number")
		}
		return binary.BigEndian.AppendUint64(dst, n), nil
	case TypeSigned:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad("a signed 32-bit number")
		}
		return binary.BigEndian.AppendUint32(dst, uint32(int32(n))), nil
	case TypeDate:
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return binary.BigEndian.AppendUint32(dst, uint32(n)), nil
		}
		t, err := time.Parse(dateLayout, strings.Trim(s, `"`))
		if err != nil || t.Unix() < 0 || t.Unix() > math.MaxUint32 {
			return bad(`a date ("` + dateLayout + `" or seconds)`)
		}
		return binary.BigEndian.AppendUint32(dst, uint32(t.Unix())), nil
	case TypeIPv6Addr:
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("an IPv6 address")
		}
		b := ip.As16()
		return append(dst, b[:]...), nil
	case TypeIPv6Prefix, TypeIPv4Prefix:
		addr, bits, ok := strings.Cut(s, "/")
		ip, err := netip.ParseAddr(addr)
		n, err2 := strconv.ParseUint(bits, 10, 8)
		if a.Type == TypeIPv4Prefix {
			if !ok || err != nil || err2 != nil || !ip.Is4() || n > 32 {
				return bad("an IPv4 prefix")
			}
			b := ip.As4()
			return append(append(dst, 0, byte(n)), b[:]...), nil
		}
		if !ok || err != nil || err2 != nil || !ip.Is6() || ip.Zone() != "" || n > 128 {
			return bad("an IPv6 prefix")
		}
		b := ip.As16()
		// The shortest encoding that keeps every non-zero octet (RFC 3162 §2.3 allows 0–16 octets).
		l := (int(n) + 7) / 8
		for i := l; i < 16; i++ {
			if b[i] != 0 {
				l = i + 1
			}
		}
		return append(append(dst, 0, byte(n)), b[:l]...), nil
	case TypeIfID:
		groups := strings.Split(s, ":")
		if len(groups) != 4 {
			return bad("an interface id (4 groups of hex)")
		}
		for _, g := range groups {
			n, err := strconv.ParseUint(g, 16, 16)
			if err != nil {
				return bad("an interface id (4 groups of hex)")
			}
			dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		}
		return dst, nil
	case TypeEther:
		groups := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == '-' })
		if len(groups) != 6 {
			return bad("a MAC address")
		}
		for _, g := range groups {
			n, err := strconv.ParseUint(g, 16, 8)
			if err != nil {
				return bad("a MAC address")
			}
			dst = append(dst, byte(n))
		}
		return dst, nil
	}
	// octets and the opaque types
	h, ok := strings.CutPrefix(s, "0x")
	if !ok {
		if h, ok = strings.CutPrefix(s, "0X"); !ok {
			return bad("0x-prefixed hex")
		}
	}
	out, err := hex.AppendDecode(dst, []byte(h))
	if err != nil {
		return bad("0x-prefixed hex")
	}
	if a.Size != 0 && len(out)-len(dst) != int(a.Size) {
		return bad(strconv.Itoa(int(a.Size)) + " octets")
	}
	return out, nil
}

func (a AttrDef) parseNumber(s string) (uint64, bool) {
	if n, ok := a.ValueNumber(s); ok {
		return uint64(n), true
	}
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		n, err := strconv.ParseUint(h, 16, 64)
		return n, err == nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// unquote reads a FreeRADIUS quoted string: the escapes appendQuoted writes, octal included.
func unquote(dst []byte, s string) ([]byte, error) {
	q := s[0]
	if s[len(s)-1] != q {
		return nil, fmt.Errorf("%w: %s: unterminated quote", ErrAttrValue, s)
	}
	body := s[1 : len(s)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == q {
			return nil, fmt.Errorf("%w: %s: unescaped quote", ErrAttrValue, s)
		}
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i == len(body) {
			return nil, fmt.Errorf("%w: %s: trailing backslash", ErrAttrValue, s)
		}
		switch c = body[i]; c {
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case '0', '1', '2', '3':
			if i+2 >= len(body) || !isOctal(body[i+1]) || !isOctal(body[i+2]) {
				return nil, fmt.Errorf("%w: %s: octal escape needs 3 digits", ErrAttrValue, s)
			}
			dst = append(dst, (c-'0')<<6|(body[i+1]-'0')<<3|(body[i+2]-'0'))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
