package dynauth

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"mxedge/proxy/packet"
)

// Action is what the edge itself asks a NAS to do to a session (an operator's `mxedge coa`, or
// reconciliation after an outage).
type Action string

const (
	// ActionDisconnect ends the session: Disconnect-Request (RFC 5176 §3.1), every vendor.
	ActionDisconnect Action = "disconnect"
	// ActionReauthenticate makes the NAS re-run authentication for the session, keeping it up,
	// where the vendor defines a CoA for it (Render).
	ActionReauthenticate Action = "reauthenticate"
	// ActionBouncePort takes the session's port down and up, so the client asks DHCP again after
	// a VLAN change, where the vendor defines a CoA for it (Render).
	ActionBouncePort Action = "bounce-port"
)

// Errors of Originate.
var (
	// ErrNoVendorAction: the NAS's vendor defines no CoA for the action (see Render).
	ErrNoVendorAction = errors.New("dynauth: the NAS's vendor defines no CoA for this action")
	// ErrUnknownNAS: no NAS client has that name.
	ErrUnknownNAS = errors.New("dynauth: no such NAS client")
	// ErrNoSessionID: the target names no session attribute the NAS could find it by.
	ErrNoSessionID = errors.New("dynauth: the target names no session (Acct-Session-Id, User-Name, Calling-Station-Id or Framed-IP-Address)")
	// ErrNASAddress: the NAS is a prefix and the target does not say which address it is.
	ErrNASAddress = errors.New("dynauth: the NAS client is a prefix and the session's NAS address is unknown")
)

// Target names a session on a NAS.
type Target struct {
	NAS     string     // the NAS client's name
	NASAddr netip.Addr // the address the session's requests came from; default the NAS's own (one host)
	// Session identification (RFC 5176 §3): every one set is sent.
	AcctSessionID    string
	UserName         string
	CallingStationID string
	FramedIP         netip.Addr
}

// Rendered is what an action becomes for one vendor: the request code and the vendor attributes
// added to the session identification.
type Rendered struct {
	Code packet.Code
	VSAs []VSA
}

// VSA is one Vendor-Specific sub-attribute (RFC 2865 §5.26).
type VSA struct {
	Vendor uint32
	Type   uint8
	Value  []byte
}

// IANA enterprise numbers of the vendors whose actions Render knows.
const (
	vendorCisco uint32 = 9
	vendorHP    uint32 = 11
	vendorAruba uint32 = 14823
)

// bounceSeconds is how long an HPE or Aruba NAS keeps the port down: Cisco's fixed bounce is ten
// seconds, the others take the time in the attribute.
const bounceSeconds = 10

// Render says what action becomes for a NAS of vendor, or false where the vendor defines nothing
// for it (docs/coa.md has the table and the vendor documents it follows):
//   - disconnect: Disconnect-Request, every vendor;
//   - reauthenticate: Cisco CoA-Request with Cisco-AVPair "subscriber:command=reauthenticate";
//   - bounce-port: Cisco CoA-Request with Cisco-AVPair "subscriber:command=bounce-host-port",
//     Aruba (AOS-CX) CoA-Request with Aruba-Port-Bounce-Host, HPE (ArubaOS-Switch) CoA-Request
//     with HP-Port-Bounce-Host, both 10 seconds.
func Render(vendor string, a Action) (Rendered, bool) {
	secs := binary.BigEndian.AppendUint32(nil, bounceSeconds)
	switch a {
	case ActionDisconnect:
		return Rendered{Code: packet.CodeDisconnectRequest}, true
	case ActionReauthenticate:
		if vendor == "cisco" {
			return Rendered{Code: packet.CodeCoARequest, VSAs: []VSA{{vendorCisco, 1, []byte("subscriber:command=reauthenticate")}}}, true
		}
	case ActionBouncePort:
		switch vendor {
		case "cisco":
			return Rendered{Code: packet.CodeCoARequest, VSAs: []VSA{{vendorCisco, 1, []byte("subscriber:command=bounce-host-port")}}}, true
		case "aruba":
			return Rendered{Code: packet.CodeCoARequest, VSAs: []VSA{{vendorAruba, 40, secs}}}, true
		case "hpe":
			return Rendered{Code: packet.CodeCoARequest, VSAs: []VSA{{vendorHP, 23, secs}}}, true
		}
	}
	return Rendered{}, false
}

// Originate sends action for target's session to its NAS and waits for the outcome: the NAS's
// ACK or NAK, or NAK 506 after the retransmissions. from names who asked, for events and the
// decision log ("operator", "reconcile"). It returns an error only when nothing was sent.
func (r *Relay) Originate(ctx context.Context, from string, a Action, t Target) (Outcome, error) {
	tb := r.tables.Load()
	nas := tb.byName[t.NAS]
	if nas == nil {
		return Outcome{}, fmt.Errorf("%w: %q", ErrUnknownNAS, t.NAS)
	}
	rd, ok := Render(nas.Vendor, a)
	if !ok {
		return Outcome{}, fmt.Errorf("%w: %s on %s (%s)", ErrNoVendorAction, a, nas.Name, nas.Vendor)
	}
	addr := t.NASAddr.Unmap()
	if !addr.IsValid() || !nas.Prefix.Contains(addr) {
		if !nas.Prefix.IsSingleIP() {
			return Outcome{}, fmt.Errorf("%w: %s", ErrNASAddress, nas.Name)
		}
		addr = nas.Prefix.Addr()
	}
	if t.AcctSessionID == "" && t.UserName == "" && t.CallingStationID == "" && !t.FramedIP.IsValid() {
		return Outcome{}, ErrNoSessionID
	}
	// The request is signed with a secret of its own: it enters the relay like any requester's,
	// which re-signs it for the NAS.
	secret := make([]byte, 16)
	rand.Read(secret)
	b := packet.New(nil, rd.Code, 0, nil)
	b.AddMA()
	if addr.Is4() {
		b.Add(packet.AttrNASIPAddress, addr.AsSlice())
	} else {
		b.Add(packet.AttrNASIPv6Address, addr.AsSlice())
	}
	if t.AcctSessionID != "" {
		b.AddString(packet.AttrAcctSessionID, t.AcctSessionID)
	}
	if t.UserName != "" {
		b.AddString(packet.AttrUserName, t.UserName)
	}
	if t.CallingStationID != "" {
		b.AddString(packet.AttrCallingStationID, t.CallingStationID)
	}
	if t.FramedIP.Is4() {
		b.Add(attrFramedIPAddress, t.FramedIP.AsSlice())
	}
	// RFC 5176 §3.5: Event-Timestamp lets the NAS refuse a replay; it also makes two identical
	// requests distinct to every duplicate cache on the way.
	b.AddUint32(attrEventTimestamp, uint32(r.opts.Now().Unix()))
	for _, v := range rd.VSAs {
		b.AddVSA(v.Vendor, v.Type, v.Value)
	}
	p, err := b.Finish(secret, nil)
	if err != nil {
		return Outcome{}, fmt.Errorf("dynauth: build %s: %w", a, err)
	}
	done := make(chan Outcome, 1)
	in := inbound{from: from, p: p, secret: secret, reply: func([]byte) error { return nil },
		done: func(o Outcome) { done <- o }}
	in.key = dupKey{origin: fmt.Sprintf("edge:%s#%d", from, r.originSeq.Add(1))}
	copy(in.key.auth[:], p.Authenticator())
	r.handle(in)
	select {
	case o := <-done:
		return o, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}
