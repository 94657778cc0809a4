package survivability

import (
	"encoding/binary"
	"sync"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// Attributes of the replay policy that proxy/packet has no constant for, named as the dictionary
// names them (proxy/packet/dictionaries).
const (
	attrEAPKeyName = 102 // EAP-Key-Name, RFC 4072 §6.2

	msCHAPMPPEKeys = 12 // MS-CHAP-MPPE-Keys, RFC 2548 §2.4.1
	msMPPESendKey  = 16 // MS-MPPE-Send-Key, RFC 2548 §2.4.2
	msMPPERecvKey  = 17 // MS-MPPE-Recv-Key, RFC 2548 §2.4.3
	msCHAP2Success = 26 // MS-CHAP2-Success, RFC 2548 §2.3.3
)

// Replayable reports whether a reply attribute may be stored and replayed to a later, different
// session. It is false for identities and per-session material:
//   - User-Name: the identity the cloud confirmed is learned from it (Learner) but never replayed:
//     a local answer names only what the request itself proved (RFC 2865 §5.1), the certificate
//     identity the local EAP-TLS server verified;
//   - EAP-Message, State, Message-Authenticator, Proxy-State: bound to one exchange (RFC 3579 §3,
//     RFC 2865 §5.24/§5.33);
//   - Class: the cloud's session cookie for accounting (RFC 2865 §5.25);
//   - every attribute the dictionary marks encrypt= (packet.Dictionary.Encrypted: User-Password,
//     Tunnel-Password, MS-CHAP-MPPE-Keys, MS-MPPE-Send-Key/Recv-Key, Aruba-MPSK-Passphrase): hidden
//     with the secret and the Request Authenticator of one request, so garbage in any other;
//   - CHAP-Password, MS-CHAP2-Success, EAP-Key-Name: secrets or responses of one authentication
//     (RFC 2865 §5.3, RFC 2548 §2.3.3, RFC 4072 §6.2).
//
// Everything else (Tunnel-Type/Medium-Type/Private-Group-Id, Filter-Id, Session-Timeout,
// Idle-Timeout, Termination-Action, Egress-VLAN-Name, Cisco-AVPair, Aruba-User-Role, Juniper and
// Palo Alto VSAs, ...) is authorization and is replayed. The policy is applied when a reply is
// learned (ReplyAttrs) and again when a record is replayed (AppendAttrs), since the cache keeps
// attributes opaque and records also arrive by import.
func Replayable(a cache.Attr) bool {
	if a.Vendor == 0 {
		return standard()[a.Type].replayable
	}
	return replayable(a)
}

// replayable is Replayable from the dictionary, for any attribute.
func replayable(a cache.Attr) bool {
	code := a.Type
	if a.Vendor != 0 {
		code = a.VendorType
	}
	if def, ok := packet.Builtin().Attr(a.Vendor, code); ok && def.Encrypt != packet.SchemeNone {
		return false
	}
	switch a.Vendor {
	case packet.VendorMicrosoft:
		switch a.VendorType {
		case msCHAPMPPEKeys, msMPPESendKey, msMPPERecvKey, msCHAP2Success:
			return false
		}
		return true
	case 0:
	default:
		return true
	}
	switch a.Type {
	case packet.AttrUserName, packet.AttrUserPassword, packet.AttrCHAPPassword, packet.AttrState, packet.AttrClass, packet.AttrProxyState,
		packet.AttrTunnelPassword, packet.AttrEAPMessage, packet.AttrMessageAuthenticator, attrEAPKeyName:
		return false
	}
	return true
}

// tagged returns whether standard attribute t carries an RFC 2868 §3.1 tag and whether it is an
// integer (whose tag octet is always present, in front of a 3-octet value) or a string (whose
// first octet is a tag only when it is 0x01–0x1F), from the dictionary's has_tag flag.
func tagged(t uint8) (isTagged, integer bool) {
	st := standard()[t]
	return st.tagged, st.integer
}

// standardAttr is what the replay policy knows of a standard attribute type (vendor 0).
type standardAttr struct{ replayable, tagged, integer bool }

// standard holds replayable and taggedDef of every standard attribute type, computed once: a
// local answer asks them up to three times of each attribute it replays (authorization,
// AppendAttrs), each time a binary search of a dictionary that never changes (packet.Builtin).
var standard = sync.OnceValue(func() *[256]standardAttr {
	var t [256]standardAttr
	for i := range t {
		typ := uint8(i)
		t[i].replayable = replayable(cache.Attr{Type: typ})
		t[i].tagged, t[i].integer = taggedDef(typ)
	}
	return &t
})

// taggedDef is tagged from the dictionary.
func taggedDef(t uint8) (isTagged, integer bool) {
	def, ok := packet.Builtin().Attr(0, t)
	if !ok || !def.Tagged {
		return false, false
	}
	return true, def.Type == packet.TypeInteger
}

// ReplyAttrs converts the attributes of a reply into cache attributes, keeping only what may be
// replayed (Replayable) and splitting Vendor-Specific attributes into their sub-attributes.
// Vendor attributes not in the RFC 2865 §5.26 format are kept whole.
func ReplyAttrs(p packet.Packet) []cache.Attr {
	var out []cache.Attr
	add := func(a cache.Attr) {
		if Replayable(a) {
			a.Value = append([]byte(nil), a.Value...)
			out = append(out, a)
		}
	}
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return out
		}
		isTagged, integer := tagged(typ)
		switch {
		case typ == packet.AttrVendorSpecific:
			if !packet.SplitVSA(v, func(s packet.VSA) {
				add(cache.Attr{Type: typ, Vendor: s.Vendor, VendorType: s.Type, Value: s.Value})
			}) && len(v) >= 4 {
				// Opaque vendor format: keep it whole under VendorType 0.
				add(cache.Attr{Type: typ, Vendor: binary.BigEndian.Uint32(v), Value: v[4:]})
			}
		case isTagged && integer && len(v) == 4:
			add(cache.Attr{Type: typ, Tag: v[0], Value: v[1:]})
		case isTagged && !integer && len(v) > 1 && v[0] >= 0x01 && v[0] <= 0x1f:
			add(cache.Attr{Type: typ, Tag: v[0], Value: v[1:]})
		default:
			add(cache.Attr{Type: typ, Value: v})
		}
	}
}

// ResponseLen is the length of a response carrying Message-Authenticator and attrs, as
// AppendAttrs writes them (at most: a vendor attribute takes 6 octets of header), for sizing the
// buffer once (RFC 2865 §3: a 20-octet header; RFC 3579 §3.2: 18 octets of
// Message-Authenticator).
func ResponseLen(attrs []cache.Attr) int {
	n := 20 + 18
	for _, a := range attrs {
		n += 2 + 6 + 1 + len(a.Value)
	}
	return min(n, packet.MaxLen)
}

// AppendAttrs adds cached attributes to a reply under construction, byte for byte as they were
// learned, skipping any that are not Replayable (a record imported from elsewhere may carry them).
func AppendAttrs(b *packet.Builder, attrs []cache.Attr) {
	for _, a := range attrs {
		if !Replayable(a) {
			continue
		}
		_, integer := tagged(a.Type)
		switch {
		case a.Type == packet.AttrVendorSpecific && a.VendorType == 0:
			var buf [253]byte // Add copies the value; a longer one fails there
			v := binary.BigEndian.AppendUint32(buf[:0], a.Vendor)
			b.Add(a.Type, append(v, a.Value...))
		case a.Type == packet.AttrVendorSpecific:
			b.AddVSA(a.Vendor, a.VendorType, a.Value)
		case integer && len(a.Value) == 3:
			// The 3 value octets after the tag (ReplyAttrs split a 4-octet value).
			b.Add(a.Type, []byte{a.Tag, a.Value[0], a.Value[1], a.Value[2]})
		default:
			b.AddTagged(a.Type, a.Tag, a.Value)
		}
	}
}

// ReplyVLAN returns the Tunnel-Private-Group-Id of a reply (without an RFC 2868 tag), or "",
// without converting the other attributes.
func ReplyVLAN(p packet.Packet) string {
	v, ok := p.Attr(packet.AttrTunnelPrivateGroupID)
	if !ok {
		return ""
	}
	if len(v) > 1 && v[0] >= 0x01 && v[0] <= 0x1f {
		v = v[1:]
	}
	return string(v)
}

// VLAN returns the Tunnel-Private-Group-Id among attrs (the VLAN ID or name), or "".
func VLAN(attrs []cache.Attr) string {
	for _, a := range attrs {
		if a.Type == packet.AttrTunnelPrivateGroupID && a.Vendor == 0 {
			return string(a.Value)
		}
	}
	return ""
}
