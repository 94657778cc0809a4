// Package dynauth owns RFC 5176 Dynamic Authorization on the edge: it relays CoA-Request and
// Disconnect-Request from whoever may send them (on-prem Dynamic Authorization clients over UDP,
// the cloud NAC over the RadSec connections mxedge opened upstream) to the NAS that holds the
// session, re-signed with that NAS's secret, and relays the NAS's ACK or NAK back.
//
// A request is routed by the NAS identification attributes it carries (Operator-NAS-Identifier of
// RFC 8559, NAS-IP-Address, NAS-IPv6-Address, NAS-Identifier) to a configured NAS client, or, when
// it carries none, by looking its session up (Acct-Session-Id, Calling-Station-Id, User-Name,
// Framed-IP-Address) in a table the consumer supplies. What cannot be relayed is answered with a
// NAK whose Error-Cause (RFC 5176 §3.6) says why: 502 Request Not Routable, 503 Session Context Not
// Found, 506 Resources Unavailable when the NAS did not answer the retransmissions.
package dynauth
