package packet

import "strconv"

//go:generate go run ./internal/dictgen -in dictionaries/dictionary -out dict_table.go

// The attribute dictionary names, parses and renders attributes. The only thing it decides about
// forwarding is which attributes are re-keyed: its encrypt= table (rekey.go; docs/decisions.md,
// "One attribute dictionary"). The built-in one is
// a table generated from FreeRADIUS-format files kept in dictionaries/, so nothing is parsed at
// start-up; Dictionary.Load adds an operator's vendor files on top of it at run time.

// DataType is the syntax of an attribute value, as the FreeRADIUS dictionary format names it.
type DataType uint8

// Data types (RFC 8044 §3 and FreeRADIUS's dictionary types).
const (
	TypeOctets     DataType = iota // opaque octets, printed 0x…
	TypeString                     // text (RFC 2865 §5: UTF-8 in practice)
	TypeIPAddr                     // IPv4 address, 4 octets
	TypeInteger                    // 32-bit unsigned, network order
	TypeDate                       // 32-bit seconds since the Unix epoch
	TypeIPv6Addr                   // 16 octets (RFC 3162 §2.4)
	TypeIPv6Prefix                 // reserved, prefix length, prefix (RFC 3162 §2.3)
	TypeIfID                       // 8-octet interface identifier (RFC 3162 §2.2)
	TypeInteger64                  // 64-bit unsigned (RFC 6929 §2.4)
	TypeEther                      // 6-octet MAC address
	TypeByte                       // 8-bit unsigned
	TypeShort                      // 16-bit unsigned
	TypeSigned                     // 32-bit signed
	TypeIPv4Prefix                 // reserved, prefix length, 4 octets (RFC 6572 §4.2)
	TypeABinary                    // Ascend binary filter, printed as octets
	TypeTLV                        // a container of sub-attributes, printed as octets
	TypeVSA                        // Vendor-Specific (RFC 2865 §5.26)
)

var typeNames = [...]string{
	TypeOctets: "octets", TypeString: "string", TypeIPAddr: "ipaddr", TypeInteger: "integer",
	TypeDate: "date", TypeIPv6Addr: "ipv6addr", TypeIPv6Prefix: "ipv6prefix", TypeIfID: "ifid",
	TypeInteger64: "integer64", TypeEther: "ether", TypeByte: "byte", TypeShort: "short",
	TypeSigned: "signed", TypeIPv4Prefix: "ipv4prefix", TypeABinary: "abinary", TypeTLV: "tlv",
	TypeVSA: "vsa",
}

// String returns the dictionary-format name of t ("string", "ipaddr", …).
func (t DataType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Scheme is how an attribute value is hidden with the shared secret: the FreeRADIUS `encrypt=`
// flag. A proxy must re-encrypt such a value when it crosses to another secret, and a cache must
// never keep it.
type Scheme uint8

// Encryption schemes.
const (
	SchemeNone         Scheme = 0 // sent as is
	SchemeUserPassword Scheme = 1 // RFC 2865 §5.2: MD5 over secret and Request Authenticator
	SchemeSalted       Scheme = 2 // RFC 2868 §3.5, RFC 2548 §2.4.2: salt, then MD5 chain
	SchemeAscend       Scheme = 3 // Ascend's secret: MD5 over authenticator and secret, 16 octets
)

// String names the scheme as the dictionary flag does ("encrypt=2") or "none".
func (s Scheme) String() string {
	if s == SchemeNone {
		return "none"
	}
	return "encrypt=" + strconv.Itoa(int(s))
}

// Value is one named value of an integer attribute (FreeRADIUS `VALUE Tunnel-Type VLAN 13`).
type Value struct {
	Name   string
	Number uint32
}

// AttrDef defines one attribute. A standard attribute has Vendor 0 and its RADIUS type in Code; a
// vendor attribute has the vendor's IANA enterprise number in Vendor and the vendor's own type in
// Code (carried inside Vendor-Specific, RFC 2865 §5.26). Ext is the extended type of an RFC 6929
// §2.1 attribute (Code 241–244), 0 otherwise. Values is sorted by Number and shared with the
// dictionary: read it, never write it.
type AttrDef struct {
	Name    string
	Vendor  uint32
	Code    uint8
	Ext     uint8
	Type    DataType
	Tagged  bool   // RFC 2868 §3.1 tag (FreeRADIUS `has_tag`)
	Encrypt Scheme // FreeRADIUS `encrypt=`
	Concat  bool   // long values split over several attributes (FreeRADIUS `concat`, RFC 3579 §3.1)
	Size    uint8  // fixed length of an `octets[N]` attribute, 0 when free
	Values  []Value
}

// VendorDef is one vendor: its name as the dictionary spells it, its IANA enterprise number, and
// the widths of its sub-attribute type and length fields (FreeRADIUS `format=t,l`; RFC 2865 §5.26
// recommends 1,1).
type VendorDef struct {
	Name         string
	ID           uint32
	TypeOctets   uint8
	LengthOctets uint8
}

// Dictionary maps attribute names to definitions and back. The zero value is empty; Builtin
// returns the one generated from dictionaries/; Load returns a new one with more files on top.
// A Dictionary is immutable, so any number of goroutines may use it at once, and its lookups
// allocate nothing.
type Dictionary struct {
	attrs   []AttrDef   // sorted by (Vendor, Code, Ext)
	byName  []uint16    // indices into attrs, sorted by case-folded name
	vendors []VendorDef // sorted by ID
	vbyName []uint16    // indices into vendors, sorted by case-folded name
	// hidden indexes the attributes marked encrypt=, in attrs order: the table re-keying
	// (rekey.go) and Encrypted read.
	hidden []uint16
}

var builtin = Dictionary{
	attrs: builtinAttrs[:], byName: builtinByName[:],
	vendors: builtinVendors[:], vbyName: builtinVendorsByName[:],
	hidden: builtinHidden[:],
}

// Builtin returns the dictionary generated from the files in dictionaries/ (RFC attributes and the
// vendors mxedge meets).
func Builtin() *Dictionary { return &builtin }

// Attr returns the definition of standard attribute code (vendor 0) or of a vendor's
// sub-attribute code.
func (d *Dictionary) Attr(vendor uint32, code uint8) (AttrDef, bool) {
	return d.find(vendor, code, 0)
}

// ExtAttr returns the definition of an RFC 6929 extended attribute (code 241–244, extended type
// ext).
func (d *Dictionary) ExtAttr(code, ext uint8) (AttrDef, bool) {
	if ext == 0 {
		return AttrDef{}, false
	}
	return d.find(0, code, ext)
}

func (d *Dictionary) find(vendor uint32, code, ext uint8) (AttrDef, bool) {
	lo, hi := 0, len(d.attrs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if attrLess(&d.attrs[m], vendor, code, ext) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.attrs) {
		if a := &d.attrs[lo]; a.Vendor == vendor && a.Code == code && a.Ext == ext {
			return *a, true
		}
	}
	return AttrDef{}, false
}

func attrLess(a *AttrDef, vendor uint32, code, ext uint8) bool {
	if a.Vendor != vendor {
		return a.Vendor < vendor
	}
	if a.Code != code {
		return a.Code < code
	}
	return a.Ext < ext
}

// ByName returns the definition named name, compared case-insensitively as FreeRADIUS does.
func (d *Dictionary) ByName(name string) (AttrDef, bool) {
	lo, hi := 0, len(d.byName)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if foldCompare(d.attrs[d.byName[m]].Name, name) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.byName) {
		if a := &d.attrs[d.byName[lo]]; foldCompare(a.Name, name) == 0 {
			return *a, true
		}
	}
	return AttrDef{}, false
}

// Vendor returns the vendor with IANA enterprise number id.
func (d *Dictionary) Vendor(id uint32) (VendorDef, bool) {
	lo, hi := 0, len(d.vendors)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.vendors[m].ID < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.vendors) && d.vendors[lo].ID == id {
		return d.vendors[lo], true
	}
	return VendorDef{}, false
}

// VendorByName returns the vendor named name (case-insensitive).
func (d *Dictionary) VendorByName(name string) (VendorDef, bool) {
	lo, hi := 0, len(d.vbyName)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if foldCompare(d.vendors[d.vbyName[m]].Name, name) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.vbyName) {
		if v := d.vendors[d.vbyName[lo]]; foldCompare(v.Name, name) == 0 {
			return v, true
		}
	}
	return VendorDef{}, false
}

// All calls fn for every definition in (Vendor, Code, Ext) order until fn returns false.
func (d *Dictionary) All(fn func(AttrDef) bool) {
	for i := range d.attrs {
		if !fn(d.attrs[i]) {
			return
		}
	}
}

// Vendors calls fn for every vendor in ID order until fn returns false.
func (d *Dictionary) Vendors(fn func(VendorDef) bool) {
	for _, v := range d.vendors {
		if !fn(v) {
			return
		}
	}
}

// Encrypted returns every attribute the dictionary marks `encrypt=`: the values a proxy re-keys
// when it changes secrets and a cache never stores (RFC 2865 §5.2, RFC 2868 §3.5, RFC 2548 §2.4).
func (d *Dictionary) Encrypted() []AttrDef {
	out := make([]AttrDef, 0, len(d.hidden))
	for _, i := range d.hidden {
		out = append(out, d.attrs[i])
	}
	return out
}

// hiddenAttr returns the encrypt= definition of attribute (vendor, code, ext), if it has one. The
// table is a handful of entries, so a scan costs less than the binary search over every attribute,
// and it allocates nothing: it runs for every attribute a proxy forwards.
func (d *Dictionary) hiddenAttr(vendor uint32, code, ext uint8) (*AttrDef, bool) {
	for _, i := range d.hidden {
		if a := &d.attrs[i]; a.Vendor == vendor && a.Code == code && a.Ext == ext {
			return a, true
		}
	}
	return nil, false
}

// hidesVendor reports whether any attribute of vendor is marked encrypt=: a Vendor-Specific of
// any other vendor is forwarded without being split.
func (d *Dictionary) hidesVendor(vendor uint32) bool {
	for _, i := range d.hidden {
		if d.attrs[i].Vendor == vendor {
			return true
		}
	}
	return false
}

// ValueName returns the name of integer value n of a, if the dictionary has one.
func (a AttrDef) ValueName(n uint32) (string, bool) {
	lo, hi := 0, len(a.Values)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.Values[m].Number < n {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(a.Values) && a.Values[lo].Number == n {
		return a.Values[lo].Name, true
	}
	return "", false
}

// ValueNumber returns the number of the value named name (case-insensitive).
func (a AttrDef) ValueNumber(name string) (uint32, bool) {
	for _, v := range a.Values {
		if foldCompare(v.Name, name) == 0 {
			return v.Number, true
		}
	}
	return 0, false
}

// foldCompare compares a and b with ASCII letters folded to lower case, without allocating.
// Dictionary names are ASCII.
func foldCompare(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := lower(a[i]), lower(b[i])
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
