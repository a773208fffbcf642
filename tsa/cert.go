package tsa

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"time"
)

// CertificateTemplate returns a template for a TSA certificate in the
// profile of RFC 3161 §2.3, ready for
//
//	x509.CreateCertificate(rand.Reader, CertificateTemplate(subject, notBefore, notAfter), caCert, tsaPublicKey, caKey)
//
// The template has key usage digitalSignature, is not a CA, and carries the
// extended key usage timeStamping as its only purpose in a critical
// extension, as RFC 3161 requires and OpenSSL enforces. crypto/x509 never
// marks the extended key usage critical, so the extension is in
// ExtraExtensions and ExtKeyUsage is left empty: callers MUST NOT set
// ExtKeyUsage, which would add a second, non-critical copy.
//
// SerialNumber is nil, so x509.CreateCertificate picks a random one; callers
// may set their own.
func CertificateTemplate(subject pkix.Name, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		ExtraExtensions: []pkix.Extension{{
			Id:       oidExtKeyUsage,
			Critical: true,
			Value:    timeStampingEKU(),
		}},
	}
}

// timeStampingEKU returns the DER value of an extended key usage extension
// whose only purpose is id-kp-timeStamping (1.3.6.1.5.5.7.3.8):
// SEQUENCE { OBJECT IDENTIFIER }.
func timeStampingEKU() []byte {
	return []byte{0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08}
}

// checkTSAProfile reports whether cert may sign time-stamp tokens under
// RFC 3161 §2.3: exactly one extended key usage extension, marked critical,
// whose only purpose is timeStamping; not a CA; and, when key usage is
// present, digitalSignature or nonRepudiation among its bits.
func checkTSAProfile(cert *x509.Certificate) error {
	var n int
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidExtKeyUsage) {
			continue
		}
		n++
		if !ext.Critical {
			return errors.New("the TSA certificate's timeStamping extended key usage is not marked critical (RFC 3161 §2.3)")
		}
	}
	switch {
	case n == 0:
		return errors.New("the TSA certificate has no extended key usage extension; RFC 3161 §2.3 requires a critical timeStamping one")
	case n > 1:
		return errors.New("the TSA certificate has more than one extended key usage extension")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(cert.UnknownExtKeyUsage) != 0 {
		return errors.New("the TSA certificate's extended key usage is not timeStamping alone (RFC 3161 §2.3)")
	}
	if cert.IsCA {
		return errors.New("the TSA certificate is a CA certificate")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return errors.New("the TSA certificate's key usage allows neither digitalSignature nor nonRepudiation")
	}
	return nil
}
