package survivability

import (
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"strconv"
	"strings"

	"mxedge/cache"
	"mxedge/proxy/packet"
)

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
	MAC      string // canonical aa:bb:cc:dd:ee:ff from Calling-Station-Id, "" if none
	UserName string
	EAPType  uint8 // type of the EAP-Response carried, 0 if none
	// NASPort names the port the request came from on its NAS (NAS-Port, else NAS-Port-Id), for
	// rate limits per port; "" when the NAS sent neither.
	NASPort string
}

// Classify finds how a request authenticates (docs/survivability.md, "Classification"):
//   - EAP by the EAP-Message attribute, EAP-TLS by the type of the EAP-Response it carries;
//   - MAB only when the User-Name is a MAC equal to Calling-Station-Id (in any notation) and the
//     request proves it: User-Password is that MAC (in any notation), or CHAP-Password is the CHAP
//     response to the User-Name as sent (RFC 2865 §5.3, with CHAP-Challenge or else the Request
//     Authenticator as the challenge). This is how Cisco, Aruba/HPE, Juniper and Mist send MAC
//     authentication. Service-Type Call-Check proves nothing and is not needed;
//   - anything else is a password login (MethodOther), even with a MAC as User-Name: during an
//     outage it must not skip its password.
//
// secret is the NAS secret, needed to read User-Password.
func Classify(p packet.Packet, secret []byte) Classification {
	var c Classification
	var user, calling, password, chap, challenge, eap, portID []byte
	var port []byte
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
		case packet.AttrCHAPPassword:
			chap = v
		case packet.AttrCHAPChallenge:
			challenge = v
		case packet.AttrNASPort:
			port = v
		case attrNASPortID:
			portID = v
		case packet.AttrEAPMessage:
			if eap == nil {
				eap = v // the EAP header is in the first fragment
			}
		}
	}
	c.UserName = string(user)
	switch {
	case len(port) == 4:
		c.NASPort = strconv.FormatUint(uint64(binary.BigEndian.Uint32(port)), 10)
	case len(portID) > 0:
		c.NASPort = string(portID)
	}
	// MACs are compared as octets (cache.ParseMAC allocates nothing); only the canonical form
	// the Classification carries is a string.
	mac, isMAC := cache.ParseMAC(calling)
	if isMAC {
		c.MAC = cache.FormatMAC(mac)
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
	if c.MAC == "" {
		return c
	}
	// The same octets parse the same: most NASes write User-Name, Calling-Station-Id and the
	// password alike, so each comparison below saves a parse.
	if !bytes.Equal(user, calling) {
		if userMAC, ok := cache.ParseMAC(user); !ok || userMAC != mac {
			return c
		}
	}
	switch {
	case password != nil && chap == nil:
		var buf [128]byte // RFC 2865 §5.2: at most 128 octets
		pw, err := packet.DecryptUserPassword(buf[:0], password, secret, p.Authenticator())
		if err != nil {
			return c
		}
		pw = bytes.TrimRight(pw, "\x00")
		if bytes.Equal(pw, user) || bytes.Equal(pw, calling) {
			c.Method = MethodMAB
		} else if m, ok := cache.ParseMAC(pw); ok && m == mac {
			c.Method = MethodMAB
		}
	case chap != nil && password == nil:
		if challenge == nil {
			challenge = p.Authenticator()
		}
		if chapProves(chap, challenge, user) {
			c.Method = MethodMAB
		}
	}
	return c
}

// attrNASPortID is NAS-Port-Id (RFC 2869 §5.17).
const attrNASPortID = 87

// chapLen is the length of a CHAP-Password value: the CHAP Ident and the 16-octet MD5 response
// (RFC 2865 §5.3).
const chapLen = 1 + md5.Size

// chapProves reports whether a CHAP-Password value is the response to challenge for password
// secret, MD5(Ident ‖ secret ‖ challenge) (RFC 1994 §4.1, RFC 2865 §5.3). The password a NAS
// uses for CHAP MAB is the MAC as it writes it in User-Name.
func chapProves(chap, challenge, secret []byte) bool {
	if len(chap) != chapLen || len(challenge) == 0 {
		return false
	}
	h := md5.New()
	h.Write(chap[:1])
	h.Write(secret)
	h.Write(challenge)
	return subtle.ConstantTimeCompare(h.Sum(nil), chap[1:]) == 1
}

// Anonymous reports whether an outer identity hides the user (RFC 7542 §2.4: "anonymous",
// "@realm", "anonymous@realm"), so it must not be stored as the client's identity.
func Anonymous(identity string) bool {
	local, _, _ := strings.Cut(identity, "@")
	return local == "" || strings.EqualFold(local, "anonymous")
}
