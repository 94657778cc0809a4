package packet

import (
	"errors"
	"fmt"
)

// MaxAttrs is the most attributes a request may carry: FreeRADIUS's default max_attributes, above
// which it discards the packet outright. A NAS sends a few dozen; an EAP-TLS fragment of 4096 octets
// fills 17 EAP-Message attributes.
const MaxAttrs = 200

// Errors returned by CheckRequest for defects Parse lets through because they do not break the
// framing, but that an upstream discards the request for.
var (
	ErrAttrZero     = errors.New("packet: attribute type 0")
	ErrTooManyAttrs = fmt.Errorf("packet: more than %d attributes", MaxAttrs)
)

// CheckRequest applies to a parsed request the checks an upstream RADIUS server makes before it
// processes one, so that a proxy can refuse what would otherwise be forwarded only to be dropped
// upstream: no attribute of type 0 (RFC 2865 §5 defines none, and FreeRADIUS discards such a
// packet), at most MaxAttrs attributes, and well-framed EAP (CheckEAP). Errors about EAP wrap ErrEAP.
func CheckRequest(p Packet) error {
	n := 0
	for it := p.Attrs(); ; {
		typ, _, ok := it.Next()
		if !ok {
			break
		}
		if typ == 0 {
			return ErrAttrZero
		}
		n++
	}
	if n > MaxAttrs {
		return ErrTooManyAttrs
	}
	return CheckEAP(p)
}
