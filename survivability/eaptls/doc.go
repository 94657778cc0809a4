// Package eaptls owns EAP-TLS: the EAP packet and EAP-TLS fragment codecs
// (RFC 3748 §4, RFC 5216 §3), and the server and peer state machines that
// run crypto/tls over EAP for TLS 1.2 (RFC 5216) and TLS 1.3 (RFC 9190),
// deriving MSK and EMSK.
//
// It knows nothing of RADIUS: the caller joins EAP-Message attributes into
// one EAP packet, feeds it to Server.Step and splits the answer again
// (RFC 3579), and owns State, Message-Authenticator and the MS-MPPE key
// attributes (MPPEKeys gives their plaintext). Client certificate policy is
// the caller's too, through ServerConfig.VerifyPeer.
//
// Each conversation runs its TLS handshake in one coroutine (iter.Pull) over
// an in-memory net.Conn, switched to and from by Step; the coroutine exits
// when the conversation ends, times out or is closed. Design notes, fragment and ACK rules and the TLS 1.2
// Extended Master Secret decision are in docs/eap-tls.md.
package eaptls
