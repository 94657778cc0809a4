package packet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"layeh.com/radius/dictionary"
)

// Errors of Dictionary.Load. Every error it returns is a *DictError naming the file and line.
var (
	// ErrDictConflict: a name or code is already defined differently (in the dictionary loaded on
	// or in another of the files).
	ErrDictConflict = errors.New("conflicts with an existing definition")
	// ErrDictUnsupported: the file uses something mxedge cannot represent (an encrypt= scheme
	// other than 1–3, an attribute code above 255).
	ErrDictUnsupported = errors.New("not supported")
)

// DictError locates a problem in a dictionary file. Line is 0 when the file could not be read.
type DictError struct {
	File string
	Line int
	Err  error
}

func (e *DictError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("packet: dictionary %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("packet: dictionary %s:%d: %v", e.File, e.Line, e.Err)
}

func (e *DictError) Unwrap() error { return e.Err }

// Load returns a new dictionary with the FreeRADIUS-format files at paths added on top of d, in
// order (`$INCLUDE` resolves against the including file's directory). A definition identical to
// one already present is accepted, so an operator may load a stock vendor file whose vendor is
// built in; anything defined differently is an ErrDictConflict. d itself is unchanged.
//
// Sub-attributes of TLVs, RFC 6929 long-extended attributes (245, 246) and vendor attributes of
// vendors whose type field is wider than one octet are skipped: mxedge addresses vendor
// attributes by a one-octet type (RFC 2865 §5.26) and prints such attributes by number.
func (d *Dictionary) Load(paths ...string) (*Dictionary, error) {
	b := newDictBuilder(d)
	for _, p := range paths {
		if err := b.loadFile(p); err != nil {
			return nil, err
		}
	}
	return b.finish(), nil
}

// dictBuilder accumulates definitions while files load.
type dictBuilder struct {
	attrs   map[attrKey]*dictEntry
	names   map[string]*AttrDef // folded name, earlier definitions included
	vendors map[uint32]VendorDef
	vnames  map[string]uint32 // folded name
}

// dictEntry is the definition a code prints with and the earlier definitions of the same code,
// which still parse by name. FreeRADIUS files redefine codes: dictionary.microsoft names 311/8 both
// MS-MPPE-Encryption-Type and -Types, dictionary.ruckus gives 25053/10 a new name and type.
type dictEntry struct {
	def     *AttrDef
	earlier []*AttrDef
	base    bool // defined in the dictionary loaded on: a redefinition is a conflict
}

type attrKey struct {
	vendor    uint32
	code, ext uint8
}

func newDictBuilder(d *Dictionary) *dictBuilder {
	b := &dictBuilder{
		attrs: make(map[attrKey]*dictEntry, len(d.attrs)), names: make(map[string]*AttrDef, len(d.attrs)),
		vendors: make(map[uint32]VendorDef, len(d.vendors)), vnames: make(map[string]uint32, len(d.vendors)),
	}
	for _, a := range d.attrs {
		k := attrKey{a.Vendor, a.Code, a.Ext}
		a.Values = slices.Clone(a.Values)
		b.names[strings.ToLower(a.Name)] = &a
		if e, ok := b.attrs[k]; ok {
			e.earlier = append(e.earlier, &a) // attrs lists the printed definition first
			continue
		}
		b.attrs[k] = &dictEntry{def: &a, base: true}
	}
	for _, v := range d.vendors {
		b.vendors[v.ID] = v
		b.vnames[strings.ToLower(v.Name)] = v.ID
	}
	return b
}

// recordingOpener opens $INCLUDEd files relative to the including file and remembers every file it
// opened, so that a definition can be traced back to its line.
type recordingOpener struct {
	root  string
	files []string
}

func (o *recordingOpener) OpenFile(name string) (dictionary.File, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(o.root, name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	o.files = append(o.files, name)
	return f, nil
}

func (b *dictBuilder) loadFile(path string) error {
	op := &recordingOpener{root: filepath.Dir(path)}
	p := &dictionary.Parser{Opener: op, IgnoreIdenticalAttributes: true}
	f, err := os.Open(path)
	if err != nil {
		return &DictError{File: path, Err: err}
	}
	defer f.Close()
	op.files = append(op.files, path)
	parsed, err := p.Parse(f)
	if err != nil {
		return parseError(path, err)
	}
	loc := locator{files: op.files}
	for _, v := range parsed.Vendors {
		if err := b.addVendor(v, &loc); err != nil {
			return err
		}
	}
	type pending struct {
		vendor uint32
		values []*dictionary.Value
	}
	vals := []pending{{0, parsed.Values}}
	for _, a := range parsed.Attributes {
		if err := b.addAttr(0, a, &loc); err != nil {
			return err
		}
	}
	for _, v := range parsed.Vendors {
		if v.GetTypeOctets() != 1 {
			continue
		}
		for _, a := range v.Attributes {
			if err := b.addAttr(uint32(v.Number), a, &loc); err != nil {
				return err
			}
		}
		vals = append(vals, pending{uint32(v.Number), v.Values})
	}
	for _, pv := range vals {
		for _, v := range pv.values {
			if err := b.addValue(pv.vendor, v, &loc); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseError turns a layeh parse error into a DictError with file and line.
func parseError(path string, err error) error {
	var pe *dictionary.ParseError
	if !errors.As(err, &pe) {
		return &DictError{File: path, Err: err}
	}
	inner := pe.Inner
	var ul *dictionary.UnknownLineError
	if errors.As(inner, &ul) {
		inner = fmt.Errorf("unknown line %q", strings.TrimSpace(ul.Line))
	}
	name := path
	if pe.File != nil {
		name = pe.File.Name()
	}
	return &DictError{File: name, Line: pe.Line, Err: inner}
}

func (b *dictBuilder) addVendor(v *dictionary.Vendor, loc *locator) error {
	vd := VendorDef{Name: v.Name, ID: uint32(v.Number), TypeOctets: uint8(v.GetTypeOctets()), LengthOctets: uint8(v.GetLengthOctets())}
	if v.Number < 0 {
		return loc.errorf("VENDOR", v.Name, "%w: vendor number %d", ErrDictUnsupported, v.Number)
	}
	if old, ok := b.vendors[vd.ID]; ok {
		if old != vd {
			return loc.errorf("VENDOR", v.Name, "vendor %s (%d, format=%d,%d) %w: %s (%d, format=%d,%d)", vd.Name, vd.ID,
				vd.TypeOctets, vd.LengthOctets, ErrDictConflict, old.Name, old.ID, old.TypeOctets, old.LengthOctets)
		}
		return nil
	}
	if id, ok := b.vnames[strings.ToLower(vd.Name)]; ok {
		return loc.errorf("VENDOR", v.Name, "vendor %s (%d) %w: %s is vendor %d", vd.Name, vd.ID, ErrDictConflict, vd.Name, id)
	}
	b.vendors[vd.ID] = vd
	b.vnames[strings.ToLower(vd.Name)] = vd.ID
	return nil
}

var layehTypes = map[dictionary.AttributeType]DataType{
	dictionary.AttributeString: TypeString, dictionary.AttributeOctets: TypeOctets,
	dictionary.AttributeIPAddr: TypeIPAddr, dictionary.AttributeDate: TypeDate,
	dictionary.AttributeInteger: TypeInteger, dictionary.AttributeIPv6Addr: TypeIPv6Addr,
	dictionary.AttributeIPv6Prefix: TypeIPv6Prefix, dictionary.AttributeIFID: TypeIfID,
	dictionary.AttributeInteger64: TypeInteger64, dictionary.AttributeVSA: TypeVSA,
	dictionary.AttributeEther: TypeEther, dictionary.AttributeABinary: TypeABinary,
	dictionary.AttributeByte: TypeByte, dictionary.AttributeShort: TypeShort,
	dictionary.AttributeSigned: TypeSigned, dictionary.AttributeTLV: TypeTLV,
	dictionary.AttributeIPv4Prefix: TypeIPv4Prefix,
}

// RFC 6929 §2.1: the extended attribute spaces whose second octet is the extended type.
const (
	firstExtended = 241
	lastExtended  = 244
)

func (b *dictBuilder) addAttr(vendor uint32, a *dictionary.Attribute, loc *locator) error {
	var k attrKey
	switch {
	case len(a.OID) == 1:
		k = attrKey{vendor: vendor}
		if a.OID[0] < 0 || a.OID[0] > 255 || vendor == 0 && a.OID[0] == 0 {
			return loc.errorf("ATTRIBUTE", a.Name, "%w: attribute %s has code %d", ErrDictUnsupported, a.Name, a.OID[0])
		}
		k.code = uint8(a.OID[0])
	case len(a.OID) == 2 && vendor == 0 && a.OID[0] >= firstExtended && a.OID[0] <= lastExtended && a.OID[1] > 0 && a.OID[1] <= 255:
		k = attrKey{code: uint8(a.OID[0]), ext: uint8(a.OID[1])}
	default:
		return nil // TLV members and long-extended attributes: see Load
	}
	def := AttrDef{Name: a.Name, Vendor: k.vendor, Code: k.code, Ext: k.ext, Type: layehTypes[a.Type],
		Tagged: a.HasTag(), Concat: a.FlagConcat.Valid && a.FlagConcat.Bool}
	if a.Size.Valid {
		if a.Size.Int < 1 || a.Size.Int > 253 {
			return loc.errorf("ATTRIBUTE", a.Name, "%w: octets[%d]", ErrDictUnsupported, a.Size.Int)
		}
		def.Size = uint8(a.Size.Int)
	}
	if a.FlagEncrypt.Valid {
		if a.FlagEncrypt.Int < 1 || a.FlagEncrypt.Int > int(SchemeAscend) {
			return loc.errorf("ATTRIBUTE", a.Name, "%w: encrypt=%d", ErrDictUnsupported, a.FlagEncrypt.Int)
		}
		def.Encrypt = Scheme(a.FlagEncrypt.Int)
	}
	if old, ok := b.names[strings.ToLower(def.Name)]; ok {
		if sameDef(*old, def) {
			return nil // defined again identically
		}
		return loc.errorf("ATTRIBUTE", a.Name, "attribute %s (%s %s) %w: %s (%s %s)", def.Name, def.oid(), def.Type,
			ErrDictConflict, old.Name, old.oid(), old.Type)
	}
	if e, ok := b.attrs[k]; ok {
		if e.base {
			return loc.errorf("ATTRIBUTE", a.Name, "attribute %s (%s %s) %w: %s (%s %s)", def.Name, def.oid(), def.Type,
				ErrDictConflict, e.def.Name, e.def.oid(), e.def.Type)
		}
		// A code defined again within the files of one Load: the later definition prints, as in
		// FreeRADIUS.
		e.earlier = append(e.earlier, e.def)
		e.def = &def
		b.names[strings.ToLower(def.Name)] = &def
		return nil
	}
	b.attrs[k] = &dictEntry{def: &def}
	b.names[strings.ToLower(def.Name)] = &def
	return nil
}

// sameDef reports whether two definitions agree on everything but their values.
func sameDef(a, b AttrDef) bool {
	return a.Name == b.Name && a.Vendor == b.Vendor && a.Code == b.Code && a.Ext == b.Ext && a.Type == b.Type &&
		a.Tagged == b.Tagged && a.Encrypt == b.Encrypt && a.Concat == b.Concat && a.Size == b.Size
}

// oid is the attribute's number as FreeRADIUS writes unknown ones: "81", "26.14823.2", "241.8".
func (a AttrDef) oid() string {
	switch {
	case a.Vendor != 0:
		return "26." + strconv.FormatUint(uint64(a.Vendor), 10) + "." + strconv.Itoa(int(a.Code))
	case a.Ext != 0:
		return strconv.Itoa(int(a.Code)) + "." + strconv.Itoa(int(a.Ext))
	}
	return strconv.Itoa(int(a.Code))
}

func (b *dictBuilder) addValue(vendor uint32, v *dictionary.Value, loc *locator) error {
	a, ok := b.names[strings.ToLower(v.Attribute)]
	if !ok {
		if vendor != 0 {
			if vd, ok := b.vendors[vendor]; ok && vd.TypeOctets != 1 {
				return nil // its attributes were skipped
			}
		}
		return loc.errorf("VALUE", v.Attribute, "VALUE %s for unknown attribute %s", v.Name, v.Attribute)
	}
	switch a.Type {
	case TypeInteger, TypeByte, TypeShort, TypeSigned, TypeInteger64, TypeDate:
	default:
		return nil // FreeRADIUS ignores names for non-integer types too
	}
	for _, old := range a.Values {
		if foldCompare(old.Name, v.Name) == 0 {
			if uint64(old.Number) != v.Number {
				return loc.errorf("VALUE", v.Attribute, "VALUE %s %s %d %w: it is %d", v.Attribute, v.Name, v.Number, ErrDictConflict, old.Number)
			}
			return nil
		}
	}
	// Kept sorted by number. A later name for a number goes in front of the earlier ones, so it is
	// the one ValueName finds and prints, as in FreeRADIUS; the earlier names still parse.
	i, _ := slices.BinarySearchFunc(a.Values, uint32(v.Number), func(x Value, n uint32) int { return cmpUint32(x.Number, n) })
	a.Values = slices.Insert(a.Values, i, Value{Name: v.Name, Number: uint32(v.Number)})
	return nil
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b *dictBuilder) finish() *Dictionary {
	d := &Dictionary{}
	keys := make([]attrKey, 0, len(b.attrs))
	for k := range b.attrs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y attrKey) int {
		if c := cmpUint32(x.vendor, y.vendor); c != 0 {
			return c
		}
		if x.code != y.code {
			return int(x.code) - int(y.code)
		}
		return int(x.ext) - int(y.ext)
	})
	for _, k := range keys {
		e := b.attrs[k]
		d.attrs = append(d.attrs, *e.def) // the printed definition first: find returns it
		for _, a := range e.earlier {
			d.attrs = append(d.attrs, *a)
		}
	}
	d.byName = make([]uint16, len(d.attrs))
	for i := range d.byName {
		d.byName[i] = uint16(i)
	}
	slices.SortFunc(d.byName, func(x, y uint16) int { return foldCompare(d.attrs[x].Name, d.attrs[y].Name) })
	for i := range d.attrs {
		if d.attrs[i].Encrypt != SchemeNone {
			d.hidden = append(d.hidden, uint16(i))
		}
	}
	for _, v := range b.vendors {
		d.vendors = append(d.vendors, v)
	}
	slices.SortFunc(d.vendors, func(x, y VendorDef) int { return cmpUint32(x.ID, y.ID) })
	d.vbyName = make([]uint16, len(d.vendors))
	for i := range d.vbyName {
		d.vbyName[i] = uint16(i)
	}
	slices.SortFunc(d.vbyName, func(x, y uint16) int { return foldCompare(d.vendors[x].Name, d.vendors[y].Name) })
	return d
}

// locator finds the line that defined something, since the parser keeps no positions once a file
// has parsed.
type locator struct {
	files []string
}

// errorf returns a DictError at the first line of the loaded files whose first two fields are
// keyword and name.
func (l *locator) errorf(keyword, name, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	for _, f := range l.files {
		if line := findLine(f, keyword, name); line > 0 {
			return &DictError{File: f, Line: line, Err: err}
		}
	}
	file := ""
	if len(l.files) > 0 {
		file = l.files[0]
	}
	return &DictError{File: file, Err: err}
}

func findLine(path, keyword, name string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line, _, _ := strings.Cut(s.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == keyword && strings.EqualFold(fields[1], name) {
			return n
		}
	}
	return 0
}
