package localeap

import "mxedge/proxy/packet"

// RFC 2865 §5: an attribute value holds at most 253 octets.
const maxAttrValue = 253

// Microsoft vendor attributes of RFC 2548.
const (
	msMPPESendKey = 16 // §2.4.2
	msMPPERecvKey = 17 // §2.4.3
)

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
}

// readRequest walks p once. EAP-Message values are concatenated in order: RFC 3579 §3.1 says
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
				r.eap = make([]byte, 0, 2*maxAttrValue)
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
