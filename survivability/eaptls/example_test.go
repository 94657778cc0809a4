package eaptls_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"mxedge/survivability/eaptls"
)

// The RADIUS side of a conversation: one Server per EAP conversation (keyed
// by the State attribute), fed the joined EAP-Message of each Access-Request.
func ExampleServer() {
	var serverCert tls.Certificate // leaf + intermediates, from configuration
	cfg := &eaptls.ServerConfig{
		Certificates: []tls.Certificate{serverCert},
		VerifyPeer: func(chain []*x509.Certificate) error {
			return nil // organisation CA, EKU, validity, revocation
		},
	}
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}

	var identityResponse []byte // EAP-Response/Identity from the first Access-Request
	s := eaptls.NewServer(cfg)
	defer s.Close() // also when the conversation is abandoned
	start, err := s.Start(identityResponse)
	if err != nil {
		return
	}
	_ = start // → Access-Challenge with EAP-Message and a new State

	var next []byte // EAP-Message of the next Access-Request with that State
	out, st, err := s.Step(next)
	switch st {
	case eaptls.Continue:
		_ = out // Access-Challenge
	case eaptls.Succeeded:
		res := s.Result()
		recv, send := eaptls.MPPEKeys(res.MSK)
		_, _ = recv, send // MS-MPPE-Recv-Key, MS-MPPE-Send-Key, encrypted per RFC 2548
		_ = out           // EAP-Success in the Access-Accept
	case eaptls.Failed:
		var nak *eaptls.NakError
		switch {
		case errors.As(err, &nak):
			// Reply-Message: only certificate authentication works now.
		case errors.Is(err, eaptls.ErrPeerCertificate):
			// event reason from the wrapped VerifyPeer error
		}
		_ = out // EAP-Failure in the Access-Reject
	}
}

// The supplicant side, as `mxedge test auth` and the load generator use it.
func ExampleClient() {
	c := eaptls.NewClient(&eaptls.ClientConfig{
		Identity: "anonymous@example.org",
		RootCAs:  x509.NewCertPool(),
	})
	defer c.Close()
	var requestID uint8 = 1 // from the NAS's EAP-Request/Identity
	resp := c.Identity(requestID)
	for {
		var req []byte // send resp in an Access-Request, take EAP-Message of the answer
		_ = resp
		var done bool
		var err error
		resp, done, err = c.Step(req)
		if done {
			if err == nil {
				fmt.Printf("%x\n", c.Result().MSK)
			}
			return
		}
	}
}
