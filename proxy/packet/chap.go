package packet

// AttrCHAPChallenge is CHAP-Challenge (RFC 2865 §5.40).
const AttrCHAPChallenge uint8 = 60

// chapChallengeLen is the CHAP-Challenge ForwardRequest adds: type, length and the 16-octet
// Request Authenticator of the NAS's request.
const chapChallengeLen = 2 + AuthLen

// needsCHAPChallenge reports whether a forwarded copy of req must carry CHAP-Challenge: an
// Access-Request with CHAP-Password and no CHAP-Challenge uses its Request Authenticator as the
// challenge (RFC 2865 §5.3), and the forwarded copy has a new Request Authenticator, so the
// original one has to travel as CHAP-Challenge (RFC 2865 §5.40) for the upstream to verify the
// response.
func needsCHAPChallenge(req Packet) bool {
	if req.Code() != CodeAccessRequest {
		return false
	}
	password, challenge := false, false
	for it := req.Attrs(); ; {
		typ, _, ok := it.Next()
		if !ok {
			break
		}
		switch typ {
		case AttrCHAPPassword:
			password = true
		case AttrCHAPChallenge:
			challenge = true
		}
	}
	return password && !challenge
}

// ForwardLen is the length of the packet ForwardRequest builds from req with a Proxy-State value of
// proxyStateLen octets (0: none). It is exact unless a salt-encrypted value in req carries more
// padding than it needs, which re-encryption drops (RFC 2868 §3.5, RFC 2548 §2.4.2); re-encryption
// never lengthens a value. A front door refuses requests for which it exceeds MaxLen rather than
// accept what it cannot forward.
func ForwardLen(req Packet, proxyStateLen int) int {
	n := len(req)
	if req.maOffset() < 0 {
		n += maLen
	}
	if proxyStateLen > 0 {
		n += 2 + proxyStateLen
	}
	if needsCHAPChallenge(req) {
		n += chapChallengeLen
	}
	return n
}
