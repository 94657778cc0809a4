package survivability

import (
	"encoding/binary"
	"strconv"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// Vendor numbers (IANA enterprise numbers) and attributes of the vendor table, named as the
// dictionary names them (proxy/packet/dictionaries; a test checks the numbers against it).
const (
	vendorAruba        = 14823 // VENDOR Aruba
	arubaUserVlan      = 2     // Aruba-User-Vlan, integer
	arubaNamedUserVlan = 9     // Aruba-Named-User-Vlan, string
)

// Values of the RFC 3580 §3.31 VLAN assignment.
const (
	tunnelTypeVLAN          = 13  // VALUE Tunnel-Type VLAN 13
	tunnelMediumTypeIEEE802 = 6   // VALUE Tunnel-Medium-Type IEEE-802 6
	egressUntagged          = '2' // RFC 4675 §2.3: the Egress-VLAN-Name tag indication for untagged
)

// DefaultVLANAttrs is the one place that says how a VLAN assignment is expressed for each NAS vendor
// (docs/survivability.md, "Vendor table"). Every vendor gets the RFC 3580 triplet — Tunnel-Type =
// VLAN, Tunnel-Medium-Type = IEEE-802, Tunnel-Private-Group-Id = the VLAN ID or name —
// and some need more:
//
//   - aruba: Aruba-User-Vlan (numeric) or Aruba-Named-User-Vlan (a name), which ArubaOS controllers
//     apply ahead of the RFC attributes;
//   - juniper, mist: with a VLAN name, Egress-VLAN-Name (RFC 4675 §2.3) with "2" (untagged), the
//     attribute Junos uses for dynamic wired port VLANs.
func DefaultVLANAttrs(vendor, vlan string) []cache.Attr {
	if vlan == "" {
		return nil
	}
	attrs := []cache.Attr{
		{Type: packet.AttrTunnelType, Value: []byte{0, 0, tunnelTypeVLAN}},
		{Type: packet.AttrTunnelMediumType, Value: []byte{0, 0, tunnelMediumTypeIEEE802}},
		{Type: packet.AttrTunnelPrivateGroupID, Value: []byte(vlan)},
	}
	id, err := strconv.ParseUint(vlan, 10, 12)
	numeric := err == nil && id >= 1 && id <= 4094
	switch vendor {
	case "aruba":
		if numeric {
			attrs = append(attrs, cache.Attr{Type: packet.AttrVendorSpecific, Vendor: vendorAruba, VendorType: arubaUserVlan,
				Value: binary.BigEndian.AppendUint32(nil, uint32(id))})
		} else {
			attrs = append(attrs, cache.Attr{Type: packet.AttrVendorSpecific, Vendor: vendorAruba, VendorType: arubaNamedUserVlan, Value: []byte(vlan)})
		}
	case "juniper", "mist":
		if !numeric {
			attrs = append(attrs, cache.Attr{Type: packet.AttrEgressVLANName, Value: append([]byte{egressUntagged}, vlan...)})
		}
	}
	return attrs
}
