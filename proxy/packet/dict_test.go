package packet

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBuiltinIsGenerated checks that dict_table.go is what the files in dictionaries/ say: loaded
// at run time they give the same dictionary, and the generator writes the same bytes.
func TestBuiltinIsGenerated(t *testing.T) {
	d, err := (&Dictionary{}).Load("dictionaries/dictionary")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, Builtin()) {
		t.Fatal("dict_table.go is out of date: run go generate ./proxy/packet")
	}
	out := filepath.Join(t.TempDir(), "dict_table.go")
	cmd := exec.Command("go", "run", "./internal/dictgen", "-in", "dictionaries/dictionary", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dictgen: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile("dict_table.go")
	if !bytes.Equal(got, want) {
		t.Fatal("dict_table.go differs from the generator's output: run go generate ./proxy/packet")
	}
}

// TestBuiltinNamesRoundTrip: every name resolves to its definition, and the code of every
// definition prints the name FreeRADIUS prints (the last definition of a code in the files).
func TestBuiltinNamesRoundTrip(t *testing.T) {
	d := Builtin()
	n := 0
	d.All(func(a AttrDef) bool {
		n++
		got, ok := d.ByName(a.Name)
		if !ok || !reflect.DeepEqual(got, a) {
			t.Errorf("ByName(%q) = %+v, %v; want %+v", a.Name, got, ok, a)
		}
		if up, ok := d.ByName(strings.ToUpper(a.Name)); !ok || up.Name != a.Name {
			t.Errorf("ByName is case-sensitive for %q", a.Name)
		}
		printed, ok := d.find(a.Vendor, a.Code, a.Ext)
		if !ok {
			t.Errorf("%s: no definition for its code %s", a.Name, a.oid())
		} else if printed.Name != a.Name {
			// An earlier definition of a redefined code: its name parses, the later one prints.
			if p2, _ := d.ByName(printed.Name); p2.Name != printed.Name {
				t.Errorf("%s: code %s prints %s, which does not resolve", a.Name, a.oid(), printed.Name)
			}
		}
		if a.Ext == 0 && printed.Name != "" && d.Name(a.Vendor, a.Code) != printed.Name {
			t.Errorf("Name(%d, %d) = %q, want %q", a.Vendor, a.Code, d.Name(a.Vendor, a.Code), printed.Name)
		}
		return true
	})
	if n < 500 {
		t.Errorf("only %d built-in attributes", n)
	}
	d.Vendors(func(v VendorDef) bool {
		if got, ok := d.VendorByName(v.Name); !ok || got != v {
			t.Errorf("VendorByName(%q) = %+v, %v", v.Name, got, ok)
		}
		if got, ok := d.Vendor(v.ID); !ok || got != v {
			t.Errorf("Vendor(%d) = %+v, %v", v.ID, got, ok)
		}
		return true
	})
}

// TestRadclientNames pins the spelling of the attributes mxedge prints to FreeRADIUS's (the
// interop test below compares the whole rendering with radclient's own output).
func TestRadclientNames(t *testing.T) {
	d := Builtin()
	for _, tt := range []struct {
		vendor uint32
		code   uint8
		name   string
	}{
		{0, AttrUserName, "User-Name"}, {0, AttrNASIPAddress, "NAS-IP-Address"}, {0, AttrServiceType, "Service-Type"},
		{0, AttrFilterID, "Filter-Id"}, {0, AttrState, "State"}, {0, AttrClass, "Class"},
		{0, AttrCalledStationID, "Called-Station-Id"}, {0, AttrCallingStationID, "Calling-Station-Id"},
		{0, AttrNASIdentifier, "NAS-Identifier"}, {0, AttrProxyState, "Proxy-State"},
		{0, AttrAcctSessionID, "Acct-Session-Id"}, {0, AttrNASPortType, "NAS-Port-Type"},
		{0, AttrTunnelType, "Tunnel-Type"}, {0, AttrTunnelMediumType, "Tunnel-Medium-Type"},
		{0, AttrTunnelPassword, "Tunnel-Password"}, {0, AttrEAPMessage, "EAP-Message"},
		{0, AttrMessageAuthenticator, "Message-Authenticator"},
		{0, AttrTunnelPrivateGroupID, "Tunnel-Private-Group-Id"}, {0, AttrNASIPv6Address, "NAS-IPv6-Address"},
		{0, AttrEgressVLANName, "Egress-VLAN-Name"}, {0, 56, "Egress-VLANID"}, {0, 102, "EAP-Key-Name"},
		{0, 101, "Error-Cause"}, {0, 85, "Acct-Interim-Interval"},
		{9, 1, "Cisco-AVPair"}, {311, 16, "MS-MPPE-Send-Key"}, {311, 17, "MS-MPPE-Recv-Key"},
		{2636, 1, "Juniper-Local-User-Name"}, {14823, 1, "Aruba-User-Role"}, {14823, 2, "Aruba-User-Vlan"},
		{14823, 9, "Aruba-Named-User-Vlan"}, {14823, 44, "Aruba-MPSK-Passphrase"}, {25461, 1, "PaloAlto-Admin-Role"},
		{11, 64, "HP-Egress-VLANID"}, {25053, 1, "Ruckus-User-Groups"}, {29671, 1, "Meraki-Device-Name"},
	} {
		if got := d.Name(tt.vendor, tt.code); got != tt.name {
			t.Errorf("Name(%d, %d) = %q, want %q", tt.vendor, tt.code, got, tt.name)
		}
	}
}

// TestEncryptedTable lists the attributes whose values depend on the shared secret, from the
// dictionaries' encrypt= flags: what re-keying must cover and a cache must never keep.
func TestEncryptedTable(t *testing.T) {
	var got []string
	for _, a := range Builtin().Encrypted() {
		got = append(got, a.oid()+" "+a.Name+" "+a.Encrypt.String())
	}
	want := []string{
		"2 User-Password encrypt=1",
		"69 Tunnel-Password encrypt=2",
		"26.311.12 MS-CHAP-MPPE-Keys encrypt=1",
		"26.311.16 MS-MPPE-Send-Key encrypt=2",
		"26.311.17 MS-MPPE-Recv-Key encrypt=2",
		"26.14823.44 Aruba-MPSK-Passphrase encrypt=2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Encrypted() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAppendTextAndParseAttr(t *testing.T) {
	d := Builtin()
	for _, tt := range []struct {
		vendor uint32
		code   uint8
		wire   []byte
		text   string
	}{
		{0, AttrTunnelType, []byte{0, 0, 0, 13}, "Tunnel-Type:0 = VLAN"},
		{0, AttrTunnelType, []byte{1, 0, 0, 13}, "Tunnel-Type:1 = VLAN"},
		{0, AttrTunnelPrivateGroupID, []byte("100"), `Tunnel-Private-Group-Id:0 = "100"`},
		{0, AttrTunnelPrivateGroupID, []byte("\x02guest"), `Tunnel-Private-Group-Id:2 = "guest"`},
		{0, AttrServiceType, []byte{0, 0, 0, 10}, "Service-Type = Call-Check"},
		{0, AttrServiceType, []byte{0, 0, 0, 99}, "Service-Type = 99"},
		{0, AttrSessionTimeout, []byte{0, 0, 14, 16}, "Session-Timeout = 3600"},
		{0, 8, []byte{10, 1, 2, 3}, "Framed-IP-Address = 10.1.2.3"},
		{0, 8, []byte{10, 1, 2}, "Attr-8 = 0x0a0102"},
		{0, AttrClass, []byte{1, 2, 0xff}, "Class = 0x0102ff"},
		{0, AttrFilterID, []byte("a\"b\\c\n\x01é\xff"), `Filter-Id = "a\"b\\c\n\001é\377"`},
		{0, 55, []byte{0x69, 0, 0, 0}, `Event-Timestamp = "Oct 27 2025 23:28:00 UTC"`},
		{0, 96, []byte{0, 0, 0, 0, 0, 0, 0, 1}, "Framed-Interface-Id = 0:0:0:1"},
		{0, 97, []byte{0, 64, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0}, "Framed-IPv6-Prefix = 2001:db8::/64"},
		{0, AttrNASIPv6Address, []byte{0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "NAS-IPv6-Address = 2001:db8::1"},
		{0, 200, []byte{1, 2}, "Attr-200 = 0x0102"},
		{0, 241, []byte{8, 'a', 'b'}, "Operator-NAS-Identifier = 0x6162"},
		{9, 1, []byte("shell:priv-lvl=15"), `Cisco-AVPair = "shell:priv-lvl=15"`},
		{14823, 2, []byte{0, 0, 1, 44}, "Aruba-User-Vlan = 300"},
		{14823, 250, []byte{0, 0, 1, 44}, "Attr-26.14823.250 = 0x0000012c"},
		{99999, 3, []byte{7}, "Attr-26.99999.3 = 0x07"},
		{311, 16, []byte{0x80, 1, 2}, "MS-MPPE-Send-Key = 0x800102"},
	} {
		got := string(d.AppendText(nil, tt.vendor, tt.code, tt.wire))
		if got != tt.text {
			t.Errorf("AppendText(%d, %d, %x) = %s, want %s", tt.vendor, tt.code, tt.wire, got, tt.text)
			continue
		}
		def, wire, err := d.ParseAttr(nil, tt.text)
		if err != nil {
			t.Errorf("ParseAttr(%s): %v", tt.text, err)
			continue
		}
		if def.Vendor != tt.vendor || def.Code != tt.code || !bytes.Equal(wire, tt.wire) {
			t.Errorf("ParseAttr(%s) = %d/%d %x, want %d/%d %x", tt.text, def.Vendor, def.Code, wire, tt.vendor, tt.code, tt.wire)
		}
	}
}

func TestParseAttrForms(t *testing.T) {
	d := Builtin()
	for _, tt := range []struct {
		in   string
		name string
		wire []byte
	}{
		{"Tunnel-Private-Group-Id = 100", "Tunnel-Private-Group-Id", []byte("100")},
		{"tunnel-private-group-id:1=guest", "Tunnel-Private-Group-Id", []byte("\x01guest")},
		{"Tunnel-Medium-Type:1 := IEEE-802", "Tunnel-Medium-Type", []byte{1, 0, 0, 6}},
		{"Service-Type = 10", "Service-Type", []byte{0, 0, 0, 10}},
		{"Session-Timeout = 0x10", "Session-Timeout", []byte{0, 0, 0, 16}},
		{`Reply-Message = 'it''s'`, "", nil},
		{`Reply-Message = "tab\there"`, "Reply-Message", []byte("tab\there")},
		{"Event-Timestamp = 1700000000", "Event-Timestamp", []byte{0x65, 0x53, 0xf1, 0x00}},
		{"Framed-IPv6-Prefix = 2001:db8::/32", "Framed-IPv6-Prefix", []byte{0, 32, 0x20, 1, 0x0d, 0xb8}},
		{"Attr-26.9.250 = 0x01", "Attr-26.9.250", []byte{1}},
		{"Framed-IP-Address = 2001:db8::1", "", nil},
		{"Tunnel-Private-Group-Id:40 = x", "", nil},
		{"Tunnel-Type:256 = VLAN", "", nil},
		{"User-Name:1 = bob", "", nil},
		{"No-Such-Attribute = 1", "", nil},
		{"Service-Type = Nonsense", "", nil},
		{"Class = 0102", "", nil},
		{"Tunnel-Type = 16777216", "", nil},
		{"User-Name bob", "", nil},
	} {
		def, wire, err := d.ParseAttr(nil, tt.in)
		if tt.name == "" {
			if err == nil {
				t.Errorf("ParseAttr(%s) = %s %x, want an error", tt.in, def.Name, wire)
			}
			continue
		}
		if err != nil || def.Name != tt.name || !bytes.Equal(wire, tt.wire) {
			t.Errorf("ParseAttr(%s) = %s %x, %v; want %s %x", tt.in, def.Name, wire, err, tt.name, tt.wire)
		}
	}
	if _, _, err := d.ParseAttr(nil, "No-Such = 1"); !errors.Is(err, ErrUnknownAttr) {
		t.Errorf("unknown attribute: %v, want ErrUnknownAttr", err)
	}
}

// TestLookupsDoNotAllocate: the lookups and the rendering may be used per request.
func TestLookupsDoNotAllocate(t *testing.T) {
	d := Builtin()
	buf := make([]byte, 0, 512)
	wire := []byte{1, 0, 0, 13}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = d.Attr(14823, 2)
		_, _ = d.ByName("Tunnel-Private-Group-Id")
		_, _ = d.ByName("aruba-mpsk-passphrase")
		_ = d.Name(0, AttrCallingStationID)
		buf = d.AppendText(buf[:0], 0, AttrTunnelType, wire)
		buf = d.AppendText(buf[:0], 0, AttrCallingStationID, []byte("02-00-00-00-00-01"))
	})
	if allocs != 0 {
		t.Errorf("%v allocations per lookup round, want 0", allocs)
	}
}

func writeDict(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	acme := writeDict(t, "dictionary.acme", `# a vendor mxedge does not ship
VENDOR		Acme		99999
BEGIN-VENDOR	Acme
ATTRIBUTE	Acme-Role	1	string
ATTRIBUTE	Acme-Level	2	integer
ATTRIBUTE	Acme-Secret	3	octets	encrypt=2
VALUE	Acme-Level	High	3
END-VENDOR	Acme
`)
	d, err := Builtin().Load(acme, "dictionaries/dictionary.aruba")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(d.AppendText(nil, 99999, 2, []byte{0, 0, 0, 3})); got != "Acme-Level = High" {
		t.Errorf("loaded attribute prints %s", got)
	}
	if a, ok := d.ByName("Acme-Secret"); !ok || a.Encrypt != SchemeSalted {
		t.Errorf("Acme-Secret = %+v, %v", a, ok)
	}
	if len(d.Encrypted()) != len(Builtin().Encrypted())+1 {
		t.Errorf("Encrypted() does not list the loaded encrypt= attribute")
	}
	if _, ok := Builtin().ByName("Acme-Role"); ok {
		t.Error("Load changed the built-in dictionary")
	}
	if got := d.Name(0, AttrTunnelPrivateGroupID); got != "Tunnel-Private-Group-Id" {
		t.Errorf("built-in names lost: %s", got)
	}

	// A vendor with 4-octet types: the vendor loads, its attributes (and their values) are skipped
	// and print by number; so are TLV members.
	wide := writeDict(t, "dictionary.wide", `VENDOR Wide 99998 format=4,0
BEGIN-VENDOR Wide
ATTRIBUTE Wide-Thing 1 integer
VALUE Wide-Thing On 1
END-VENDOR Wide
ATTRIBUTE Acme-Box 231 tlv
ATTRIBUTE Acme-Box-Item 231.1 string
`)
	d, err = Builtin().Load(wide)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := d.Vendor(99998); !ok || v.TypeOctets != 4 || v.LengthOctets != 0 {
		t.Errorf("vendor Wide = %+v, %v", v, ok)
	}
	for _, n := range []string{"Wide-Thing", "Acme-Box-Item"} {
		if _, ok := d.ByName(n); ok {
			t.Errorf("%s loaded; mxedge cannot address it", n)
		}
	}
	if a, ok := d.ByName("Acme-Box"); !ok || a.Type != TypeTLV {
		t.Errorf("Acme-Box = %+v, %v", a, ok)
	}
}

// TestLoadErrors: every bad file is reported with its path and the line at fault.
func TestLoadErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		line       int
		conflict   bool
		want       string
	}{
		{"unknown line", "VENDOR Acme 99999\nBEGIN-VENDOR Acme\nATRIBUTE Acme-Role 1 string\nEND-VENDOR Acme\n", 3, false, `unknown line "ATRIBUTE Acme-Role 1 string"`},
		{"unknown type", "ATTRIBUTE Acme-X 230 strng\n", 1, false, "unknown attribute type"},
		{"unclosed vendor", "VENDOR Acme 99999\nBEGIN-VENDOR Acme\nATTRIBUTE Acme-Role 1 string\n", 3, false, "unclosed BEGIN-VENDOR"},
		{"name taken", "# comment\nATTRIBUTE Tunnel-Private-Group-Id 230 string\n", 2, true, "Tunnel-Private-Group-Id (230 string) conflicts"},
		{"code taken", "\n\nATTRIBUTE My-VLAN 81 string\n", 3, true, "My-VLAN (81 string) conflicts with an existing definition: Tunnel-Private-Group-Id (81 string)"},
		{"vendor attr redefined", "VENDOR Aruba 14823\nBEGIN-VENDOR Aruba\nATTRIBUTE Aruba-User-Vlan 2 string\nEND-VENDOR Aruba\n", 3, true, "Aruba-User-Vlan (26.14823.2 string) conflicts"},
		{"vendor number taken", "VENDOR NotCisco 9\n", 1, true, "vendor NotCisco (9, format=1,1) conflicts"},
		{"vendor name taken", "VENDOR Cisco 12345\n", 1, true, "vendor Cisco (12345) conflicts"},
		{"value for unknown", "\nVALUE No-Such-Attr Foo 1\n", 2, false, "VALUE Foo for unknown attribute No-Such-Attr"},
		{"value renumbered", "VALUE Tunnel-Type VLAN 14\n", 1, true, "VALUE Tunnel-Type VLAN 14 conflicts"},
		{"bad encrypt", "ATTRIBUTE Acme-X 230 octets encrypt=9\n", 1, false, "encrypt=9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := writeDict(t, "dictionary.bad", tt.text)
			_, err := Builtin().Load(p)
			var de *DictError
			if !errors.As(err, &de) {
				t.Fatalf("Load: %v, want a *DictError", err)
			}
			if de.File != p || de.Line != tt.line {
				t.Errorf("error at %s:%d, want %s:%d (%v)", de.File, de.Line, p, tt.line, err)
			}
			if errors.Is(err, ErrDictConflict) != tt.conflict {
				t.Errorf("errors.Is(ErrDictConflict) = %v, want %v (%v)", !tt.conflict, tt.conflict, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not say %q and the file", err, tt.want)
			}
		})
	}
	t.Run("include", func(t *testing.T) {
		dir := t.TempDir()
		inc := filepath.Join(dir, "dictionary.inner")
		if err := os.WriteFile(inc, []byte("ATTRIBUTE Acme-X 230 string\nATTRIBUTE Acme-Y 231 bogus\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		top := filepath.Join(dir, "dictionary")
		if err := os.WriteFile(top, []byte("$INCLUDE dictionary.inner\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Builtin().Load(top)
		var de *DictError
		if !errors.As(err, &de) || de.File != inc || de.Line != 2 {
			t.Errorf("Load: %v, want an error at %s:2", err, inc)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Builtin().Load(filepath.Join(t.TempDir(), "nope"))
		var de *DictError
		if !errors.As(err, &de) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load: %v, want a DictError wrapping ErrNotExist", err)
		}
	})
}

// FuzzAttrText: whatever is on the wire renders to text that parses back to a value that
// renders the same (the text is a faithful name for the bytes), and neither side panics. Encrypted
// attributes are the exception by design: they render their ciphertext as octets and parse
// plaintext, as radclient reads them.
func FuzzAttrText(f *testing.F) {
	f.Add(uint32(0), uint8(64), []byte{1, 0, 0, 13})
	f.Add(uint32(0), uint8(81), []byte("\x01100"))
	f.Add(uint32(0), uint8(11), []byte("a\"b\\\n\x01é\xff"))
	f.Add(uint32(0), uint8(55), []byte{0x69, 0, 0, 0})
	f.Add(uint32(0), uint8(97), []byte{0, 64, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0})
	f.Add(uint32(0), uint8(241), []byte{8, 1})
	f.Add(uint32(14823), uint8(2), []byte{0, 0, 1, 44})
	f.Add(uint32(9), uint8(1), []byte("shell:priv-lvl=15"))
	f.Add(uint32(0), uint8(96), []byte{0, 1, 0, 2, 0, 3, 0, 4})
	d := Builtin()
	f.Fuzz(func(t *testing.T, vendor uint32, code uint8, wire []byte) {
		if len(wire) > 253 || vendor == 0 && (code == 0 || code == AttrVendorSpecific) {
			return
		}
		if a, ok := d.Attr(vendor, code); ok && a.Encrypt != SchemeNone {
			_ = d.AppendText(nil, vendor, code, wire)
			return
		}
		text := d.AppendText(nil, vendor, code, wire)
		def, back, err := d.ParseAttr(nil, string(text))
		if err != nil {
			t.Fatalf("ParseAttr(%s) (from %d/%d %x): %v", text, vendor, code, wire, err)
		}
		if def.Vendor != vendor || def.Code != code {
			t.Fatalf("ParseAttr(%s) = %d/%d, want %d/%d", text, def.Vendor, def.Code, vendor, code)
		}
		again := d.AppendText(nil, vendor, code, back)
		if !bytes.Equal(again, text) {
			t.Fatalf("%x renders %s; parsed back to %x, which renders %s", wire, text, back, again)
		}
		// Parsing arbitrary text must not panic either.
		_, _, _ = d.ParseAttr(nil, string(wire))
	})
}

// BenchmarkDictionary measures what naming one attribute costs on the request path: a lookup by
// code, one by name, and rendering a tagged value.
func BenchmarkDictionary(b *testing.B) {
	d := Builtin()
	buf := make([]byte, 0, 256)
	wire := []byte{1, 0, 0, 13}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = d.Attr(14823, 44)
		_, _ = d.ByName("Tunnel-Private-Group-Id")
		buf = d.AppendText(buf[:0], 0, AttrTunnelType, wire)
	}
}
