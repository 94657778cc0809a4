package survivability

import (
	"encoding/binary"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// RFC 2868 §3: tunnel attributes that carry a tag. The integer ones always have the tag octet in
// front of a 3-octet value; the string ones have it only when it is 0x01–0x1F.
func taggedInteger(t uint8) bool {
	return t == packet.AttrTunnelType || t == packet.AttrTunnelMediumType
}

func taggedString(t uint8) bool {
	switch t {
	case 66, 67, 68, packet.AttrTunnelPrivateGroupID, 82, 90, 91: // endpoints, ID, assignment, auth IDs
		return true
	}
	return false
}

// ReplyAttrs converts the attributes of a reply into cache attributes, keeping only what may be
// replayed (cache.ReplayableAttr) and splitting Vendor-Specific attributes into their
// sub-attributes. Vendor attributes not in the RFC 2865 §5.26 format are kept whole.
func ReplyAttrs(p packet.Packet) []cache.Attr {
	var out []cache.Attr
	add := func(a cache.Attr) {
		if cache.ReplayableAttr(a) {
			a.Value = append([]byte(nil), a.Value...)
			out = append(out, a)
		}
	}
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return out
		}
		switch {
		case typ == packet.AttrVendorSpecific:
			if !packet.SplitVSA(v, func(s packet.VSA) {
				add(cache.Attr{Type: typ, Vendor: s.Vendor, VendorType: s.Type, Value: s.Value})
			}) && len(v) >= 4 {
				// Opaque vendor format: keep it whole under VendorType 0.
				add(cache.Attr{Type: typ, Vendor: binary.BigEndian.Uint32(v), Value: v[4:]})
			}
		case taggedInteger(typ) && len(v) == 4:
			add(cache.Attr{Type: typ, Tag: v[0], Value: v[1:]})
		case taggedString(typ) && len(v) > 1 && v[0] >= 0x01 && v[0] <= 0x1f:
			add(cache.Attr{Type: typ, Tag: v[0], Value: v[1:]})
		default:
			add(cache.Attr{Type: typ, Value: v})
		}
	}
}

// AppendAttrs adds cached attributes to a reply under construction, byte for byte as they were
// learned.
func AppendAttrs(b *packet.Builder, attrs []cache.Attr) {
	for _, a := range attrs {
		switch {
		case a.Type == packet.AttrVendorSpecific && a.VendorType == 0:
			v := binary.BigEndian.AppendUint32(nil, a.Vendor)
			b.Add(a.Type, append(v, a.Value...))
		case a.Type == packet.AttrVendorSpecific:
			b.AddVSA(a.Vendor, a.VendorType, a.Value)
		case taggedInteger(a.Type):
			b.Add(a.Type, append([]byte{a.Tag}, a.Value...))
		default:
			b.AddTagged(a.Type, a.Tag, a.Value)
		}
	}
}

// ReplyVLAN returns the Tunnel-Private-Group-ID of a reply (without an RFC 2868 tag), or "",
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

// VLAN returns the Tunnel-Private-Group-ID among attrs (the VLAN ID or name), or "".
func VLAN(attrs []cache.Attr) string {
	for _, a := range attrs {
		if a.Type == packet.AttrTunnelPrivateGroupID && a.Vendor == 0 {
			return string(a.Value)
		}
	}
	return ""
}
