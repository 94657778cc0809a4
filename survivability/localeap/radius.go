package localeap

import (
	"encoding/binary"

	"mxedge/proxy/packet"
	"mxedge/survivability/eaptls"
)

// RFC 2865 §5: an attribute value holds at most 253 octets.
const maxAttrValue = 253

// Microsoft vendor attributes of RFC 2548.
const (
	msMPPESendKey = 16 // §2.4.2
	msMPPERecvKey = 17 // §2.4.3
)

// attrFramedMTU is Framed-MTU (RFC 2865 §5.12).
const attrFramedMTU = 12

const (
	stateLen        = 16
	nakReplyMessage = "only certificate (EAP-TLS) authentication works while the cloud is unreachable"
	eapCodeFailure  = 4
	eapHeaderLen    = 4
)

// requestAttrs are the attributes of an Access-Request this package reads.
type requestAttrs struct {
	eap     []byte // the EAP-Message attributes joined (RFC 3579 §3.1), nil when absent
	state   []byte
	calling string
	mtu     int // Framed-MTU, 0 when absent or not 4 octets
}

// readRequest walks p once. eap may alias p (callers copy what they keep). EAP-Message values are
// concatenated in order: RFC 3579 §3.1 says
// they MUST be consecutive, which is not enforced since joining in order is all that matters.
func readRequest(p packet.Packet) requestAttrs {
	var r requestAttrs
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			return r
		}
		switch typ {
		case packet.AttrEAPMessage:
			if r.eap == nil {
				// Most EAP packets (Identity, ACKs, a ClientHello) fit in one attribute: alias it
				// instead of copying. The capacity is cut at the value so that a second attribute
				// appends to a new array and never writes into the packet.
				r.eap = v[:len(v):len(v)]
				continue
			}
			r.eap = append(r.eap, v...)
		case packet.AttrState:
			if r.state == nil {
				r.state = v
			}
		case packet.AttrCallingStationID:
			if r.calling == "" {
				r.calling = string(v)
			}
		case attrFramedMTU:
			if r.mtu == 0 && len(v) == 4 {
				r.mtu = int(min(binary.BigEndian.Uint32(v), 1<<16))
			}
		}
	}
}

// addEAP splits an EAP packet into EAP-Message attributes of at most 253 octets (RFC 3579 §3.1).
func addEAP(b *packet.Builder, eap []byte) {
	for len(eap) > 0 {
		n := min(len(eap), maxAttrValue)
		b.Add(packet.AttrEAPMessage, eap[:n])
		eap = eap[n:]
	}
}

// eapFailure is an EAP-Failure with identifier id (RFC 3748 §4.2).
func eapFailure(id uint8) []byte { return []byte{eapCodeFailure, id, 0, eapHeaderLen} }

// Fragment sizing from Framed-MTU. RFC 3580 §3.10: the server may send EAP packets as large as
// Framed-MTU minus the 4 octets of the IEEE 802.1X header; an EAP-TLS packet adds 10 octets
// (EAP Code, Identifier, Length, Type: RFC 3748 §4; Flags and TLS Message Length: RFC 5216 §3.1)
// to its TLS data.
const (
	eapolHeaderLen   = 4
	eapTLSHeadersLen = 10
	// maxAutoFragment is the most TLS data per packet taken from Framed-MTU when fragment_size is
	// not configured: the Access-Challenge carrying it (20 header, 1400 of EAP in 6 EAP-Message
	// attributes, State 18, Message-Authenticator 18: 1468 octets) stays within a 1500-byte IP
	// packet with its IP and UDP headers, so the NAS gets it unfragmented.
	maxAutoFragment = 1390
)

// fragmentSize is the TLS data per EAP-TLS packet of a conversation whose NAS sent Framed-MTU mtu
// (0: none): the configured size, or DefaultFragmentSize when none is configured and the NAS sent
// no Framed-MTU, or as much as Framed-MTU allows up to maxAutoFragment when none is configured;
// never more than Framed-MTU allows (fewer round trips, RFC 5216 §2.1.5, but no packet larger than
// the NAS's link takes).
func fragmentSize(configured, mtu int) int {
	limit := 0
	if mtu > 0 {
		limit = max(mtu-eapolHeaderLen-eapTLSHeadersLen, eaptls.MinFragmentSize)
	}
	switch {
	case configured != 0 && limit != 0:
		return min(configured, limit)
	case configured != 0:
		return configured
	case limit != 0:
		return min(limit, maxAutoFragment)
	}
	return DefaultFragmentSize
}
