package survivability

import (
	"bytes"
	"strings"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

// serviceTypeCallCheck is Service-Type Call-Check (RFC 2865 §5.6), which Cisco and others send for
// MAC Authentication Bypass.
const serviceTypeCallCheck = 10

// eapTypeTLS is the EAP method type of EAP-TLS (RFC 5216).
const eapTypeTLS = 13

// Method is how a request authenticates, as far as survivability cares.
type Method uint8

const (
	MethodOther    Method = iota // password methods, other EAP types: not served locally
	MethodMAB                    // MAC Authentication Bypass
	MethodEAPTLS                 // EAP-TLS
	MethodEAPOther               // EAP, not (yet) known to be TLS
)

// Classification is what Classify found in a request.
type Classification struct {
	Method   Method
	MAC      string // canonical aa:bb:cc:dd:ee:ff from Calling-Station-Id (or the MAB User-Name), "" if none
	UserName string
	EAPType  uint8 // type of the EAP-Response carried, 0 if none
}

// Classify recognises MAB the way the common vendors send it (docs/survivability.md):
//   - Service-Type = Call-Check (Cisco, HPE/Aruba-CX with mac-auth), or
//   - User-Name is a MAC equal to Calling-Station-Id in any notation (Cisco, Juniper, Aruba), or
//   - User-Name is a MAC and User-Password is that MAC (Aruba, HP ProCurve, Juniper);
//
// and EAP by the EAP-Message attribute, EAP-TLS by the type of the EAP-Response it carries.
// secret is the NAS secret, needed to read User-Password.
func Classify(p packet.Packet, secret []byte) Classification {
	var c Classification
	var user, calling, password, eap []byte
	callCheck := false
	for it := p.Attrs(); ; {
		typ, v, ok := it.Next()
		if !ok {
			break
		}
		switch typ {
		case packet.AttrUserName:
			user = v
		case packet.AttrCallingStationID:
			calling = v
		case packet.AttrUserPassword:
			password = v
		case packet.AttrServiceType:
			callCheck = len(v) == 4 && v[3] == serviceTypeCallCheck && v[0]|v[1]|v[2] == 0
		case packet.AttrEAPMessage:
			if eap == nil {
				eap = v // the EAP header is in the first fragment
			}
		}
	}
	c.UserName = string(user)
	if mac, err := cache.NormalizeMAC(string(calling)); err == nil {
		c.MAC = mac
	}
	if eap != nil {
		c.Method = MethodEAPOther
		// RFC 3748 §4: Code(1) Identifier(1) Length(2) Type(1).
		if len(eap) >= 5 && eap[0] == 2 {
			c.EAPType = eap[4]
			if c.EAPType == eapTypeTLS {
				c.Method = MethodEAPTLS
			}
		}
		return c
	}
	userMAC, err := cache.NormalizeMAC(string(user))
	isMAC := err == nil
	switch {
	case callCheck:
		c.Method = MethodMAB
	case isMAC && c.MAC != "" && userMAC == c.MAC:
		c.Method = MethodMAB
	case isMAC && password != nil:
		if pw, err := packet.DecryptUserPassword(nil, password, secret, p.Authenticator()); err == nil {
			if m, err := cache.NormalizeMAC(string(bytes.TrimRight(pw, "\x00"))); err == nil && m == userMAC {
				c.Method = MethodMAB
			}
		}
	}
	if c.Method == MethodMAB && c.MAC == "" && isMAC {
		c.MAC = userMAC
	}
	return c
}

// Anonymous reports whether an outer identity hides the user (RFC 7542 §2.4: "anonymous",
// "@realm", "anonymous@realm"), so it must not be stored as the client's identity.
func Anonymous(identity string) bool {
	local, _, _ := strings.Cut(identity, "@")
	return local == "" || strings.EqualFold(local, "anonymous")
}
