package dynauth

import (
	"encoding/binary"
	"fmt"

	"mxedge/proxy/packet"
)

// forward builds the request for the NAS: identifier id, Message-Authenticator first, every
// attribute but Operator-NAS-Identifier copied (RFC 8559: it identifies the NAS to the proxies on
// the way and is removed before the request reaches the NAS), secret-dependent attributes re-keyed
// to the NAS's secret, and the Request Authenticator computed per RFC 5176 §2.3 over the NAS's
// secret.
func forward(req packet.Packet, fromSecret, toSecret []byte, id uint8) (packet.Packet, error) {
	stripped := make([]byte, packet.HeaderLen, len(req))
	copy(stripped, req[:packet.HeaderLen])
	for it := req.Attrs(); ; {
		off := it.Offset()
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == attrExtended1 && len(v) >= 1 && v[0] == extOperatorNASID {
			continue
		}
		stripped = append(stripped, req[off:off+2+len(v)]...)
	}
	binary.BigEndian.PutUint16(stripped[2:], uint16(len(stripped)))
	sp, err := packet.Parse(stripped)
	if err != nil {
		return nil, fmt.Errorf("dynauth: strip: %w", err)
	}
	k := &packet.Rekey{FromSecret: fromSecret, ToSecret: toSecret}
	fwd, err := packet.ForwardRequest(nil, sp, k, id, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("dynauth: forward: %w", err)
	}
	return fwd, nil
}

// NAK builds the negative answer to a CoA-Request or Disconnect-Request: CoA-NAK or
// Disconnect-NAK, Message-Authenticator, Error-Cause (RFC 5176 §3.6) and the request's Proxy-State
// attributes in order (RFC 2865 §5.33), signed over the request's authenticator with secret.
func NAK(req packet.Packet, secret []byte, cause uint32) (packet.Packet, error) {
	code := packet.CodeCoANAK
	if req.Code() == packet.CodeDisconnectRequest {
		code = packet.CodeDisconnectNAK
	}
	b := packet.NewResponse(nil, req, code)
	if cause != 0 {
		b.AddUint32(attrErrorCause, cause)
	}
	for it := req.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		if typ == packet.AttrProxyState {
			b.Add(typ, v)
		}
	}
	return b.Finish(secret, req.Authenticator())
}
