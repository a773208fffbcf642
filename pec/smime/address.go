package smime

import (
	"crypto/x509"
	"encoding/asn1"
	"strings"
)

// oidEmailAddress is the PKCS #9 emailAddress attribute that old gestori
// certificates carry in the subject name.
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// CertificateAddresses returns the e-mail addresses cert is issued to: its
// rfc822Name subject alternative names followed by any emailAddress
// attributes of its subject, as old gestori certificates carry (RFC 6109
// §5.5 puts the address in the subjectAltName).
func CertificateAddresses(cert *x509.Certificate) []string {
	addrs := append([]string(nil), cert.EmailAddresses...)
	for _, atv := range cert.Subject.Names {
		if !atv.Type.Equal(oidEmailAddress) {
			continue
		}
		if s, ok := atv.Value.(string); ok && s != "" {
			addrs = append(addrs, s)
		}
	}
	return addrs
}

// CheckSignerAddress returns nil if cert is issued to the address from,
// compared case-insensitively, as RFC 6109 §2.1 requires of the From field
// of every message a gestore signs. Otherwise the error, matching
// ErrSignerMismatch, names the certificate's addresses and from.
func CheckSignerAddress(cert *x509.Certificate, from string) error {
	addrs := CertificateAddresses(cert)
	if len(addrs) == 0 {
		return newReason(ErrSignerMismatch, nil, "signer certificate "+certName(cert)+" carries no e-mail address, From is "+from)
	}
	for _, a := range addrs {
		if strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(from)) {
			return nil
		}
	}
	return newReason(ErrSignerMismatch, nil, "signer "+strings.Join(addrs, ", ")+" is not the From address "+from)
}

// certName names cert in messages: its subject common name, or the whole
// subject when it has none.
func certName(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return `"` + cert.Subject.CommonName + `"`
	}
	return `"` + cert.Subject.String() + `"`
}
