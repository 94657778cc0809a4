package survivability

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestCertificateTypes(t *testing.T) {
	tests := []struct {
		h    CertHolder
		f    CertFailure
		want string
	}{
		{CertClient, CertExpired, "NAC Client Certificate Expired"},
		{CertClient, CertRevoked, "NAC Client Cert Revoked"},
		{CertClient, CertInvalid, "NAC Client Certificate Validation Failure"},
		{CertMachine, CertExpired, "NAC Machine Certificate Expired"},
		{CertMachine, CertRevoked, "NAC Machine Certificate Revoked"},
		{CertMachine, CertInvalid, "NAC Machine Certificate Validation Failure"},
		{CertUser, CertExpired, "NAC User Certificate Expired"},
		{CertUser, CertRevoked, "NAC User Certificate Revoked"},
		{CertUser, CertInvalid, "NAC User Certificate Validation Failure"},
		{CertHolder(7), CertFailure(-1), "NAC Client Certificate Validation Failure"},
	}
	for _, tt := range tests {
		if got := CertificateType(tt.h, tt.f); got != tt.want {
			t.Errorf("CertificateType(%d, %d) = %q, want %q", tt.h, tt.f, got, tt.want)
		}
	}
	if AccessType(true) != "NAC Client Access Allowed" || AccessType(false) != "NAC Client Access Denied" {
		t.Errorf("AccessType: %q, %q", AccessType(true), AccessType(false))
	}
}

func TestSetCertificate(t *testing.T) {
	notAfter := time.Date(2027, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	issuer := pkix.Name{CommonName: "Org Root CA", Organization: []string{"Example, Inc."}}
	tests := []struct {
		serial *big.Int
		want   string
	}{
		{big.NewInt(0x0c4), "c4"},
		{big.NewInt(0x1c4), "01c4"},
		{big.NewInt(0), "00"},
		{big.NewInt(-0x1234), "-1234"},
		{nil, ""},
	}
	for _, tt := range tests {
		c := &x509.Certificate{SerialNumber: tt.serial, Subject: pkix.Name{CommonName: "bob"}, Issuer: issuer, NotAfter: notAfter}
		var ev Event
		ev.SetCertificate(c)
		if ev.CertSerial != tt.want || ev.CertCN != "bob" || ev.CertIssuer != `CN=Org Root CA,O=Example\, Inc.` ||
			ev.CertNotAfter != notAfter.UTC() {
			t.Errorf("serial %v: %+v, want serial %q", tt.serial, ev, tt.want)
		}
	}
	var ev Event
	ev.SetCertificate(nil)
	if ev != (Event{}) {
		t.Errorf("nil certificate set %+v", ev)
	}
}
