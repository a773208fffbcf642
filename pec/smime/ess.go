package smime

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/digitorus/pkcs7"
)

// OIDSigningCertificateV2 is id-aa-signingCertificateV2 (RFC 5035 §3), the
// ESS signed attribute that binds a CMS signature to its signer
// certificate, as CAdES (ETSI EN 319 122-1) requires.
var OIDSigningCertificateV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}

// essCertIDv2 is ESSCertIDv2 of RFC 5035 §4. The hash algorithm, SHA-256
// by default, is left out when it is the default, as DER requires.
type essCertIDv2 struct {
	HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
	CertHash      []byte
	IssuerSerial  essIssuerSerial `asn1:"optional"`
}

// essIssuerSerial is IssuerSerial of RFC 5035 §4: the issuer as
// GeneralNames (one directoryName) and the serial number.
type essIssuerSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

// signingCertificateV2 is SigningCertificateV2 of RFC 5035 §3.
type signingCertificateV2 struct {
	Certs    []essCertIDv2
	Policies asn1.RawValue `asn1:"optional"`
}

// SigningCertificateV2 returns the ESS signing-certificate-v2 signed
// attribute (RFC 5035) naming cert: one ESSCertIDv2 holding the SHA-256
// digest of cert's DER encoding (the default hash, so not named) and
// cert's issuer and serial number. Every CMS signature this module makes
// carries it, so that the signer certificate cannot be substituted by
// another with the same public key.
func SigningCertificateV2(cert *x509.Certificate) (pkcs7.Attribute, error) {
	if cert == nil || len(cert.Raw) == 0 || cert.SerialNumber == nil {
		return pkcs7.Attribute{}, errors.New("smime: signing-certificate-v2: no certificate")
	}
	dirName, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: cert.RawIssuer})
	if err != nil {
		return pkcs7.Attribute{}, fmt.Errorf("smime: signing-certificate-v2: %w", err)
	}
	sum := crypto.SHA256.New()
	sum.Write(cert.Raw)
	der, err := asn1.Marshal(signingCertificateV2{Certs: []essCertIDv2{{
		CertHash: sum.Sum(nil),
		IssuerSerial: essIssuerSerial{
			Issuer: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dirName},
			Serial: cert.SerialNumber,
		},
	}}})
	if err != nil {
		return pkcs7.Attribute{}, fmt.Errorf("smime: signing-certificate-v2: %w", err)
	}
	return pkcs7.Attribute{Type: OIDSigningCertificateV2, Value: asn1.RawValue{FullBytes: der}}, nil
}

// CheckSigningCertificateV2 checks an ESS signing-certificate-v2 attribute
// against cert, the certificate that verified the signature. values is the
// content of the attribute's SET OF values (for a parsed pkcs7 attribute,
// Value.Bytes). The attribute must hold exactly one value, whose first
// ESSCertIDv2 must carry the digest of cert (SHA-256, SHA-384 or SHA-512)
// and, when it has an issuerSerial, cert's issuer and serial number. Any
// other case is an error: the signature names another certificate than the
// one it is checked with, and must be taken as invalid.
func CheckSigningCertificateV2(values []byte, cert *x509.Certificate) error {
	if cert == nil {
		return errors.New("signing-certificate-v2: no certificate to check against")
	}
	var sc signingCertificateV2
	rest, err := asn1.Unmarshal(values, &sc)
	if err != nil {
		return fmt.Errorf("signing-certificate-v2 attribute is malformed: %v", err)
	}
	if len(rest) != 0 {
		return errors.New("signing-certificate-v2 attribute has more than one value")
	}
	if len(sc.Certs) == 0 {
		return errors.New("signing-certificate-v2 attribute names no certificate")
	}
	id := sc.Certs[0]
	h := crypto.SHA256
	if alg := id.HashAlgorithm.Algorithm; len(alg) > 0 {
		switch {
		case alg.Equal(oidSHA256):
		case alg.Equal(oidSHA384):
			h = crypto.SHA384
		case alg.Equal(oidSHA512):
			h = crypto.SHA512
		default:
			return fmt.Errorf("signing-certificate-v2 attribute uses hash algorithm %v; only SHA-256, SHA-384 and SHA-512 are accepted", alg)
		}
	}
	d := h.New()
	d.Write(cert.Raw)
	if !bytes.Equal(id.CertHash, d.Sum(nil)) {
		return fmt.Errorf("signing-certificate-v2 attribute names another certificate than the signer's %s", certName(cert))
	}
	if id.IssuerSerial.Serial == nil {
		return nil
	}
	if id.IssuerSerial.Serial.Cmp(cert.SerialNumber) != 0 {
		return fmt.Errorf("signing-certificate-v2 attribute gives serial number %s, the signer's %s has %s",
			id.IssuerSerial.Serial, certName(cert), cert.SerialNumber)
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(id.IssuerSerial.Issuer.FullBytes, &names); err != nil || len(rest) != 0 {
		return errors.New("signing-certificate-v2 attribute: malformed issuer names")
	}
	for _, n := range names {
		if n.Class == asn1.ClassContextSpecific && n.Tag == 4 && bytes.Equal(n.Bytes, cert.RawIssuer) {
			return nil
		}
	}
	return fmt.Errorf("signing-certificate-v2 attribute names another issuer than that of the signer's %s", certName(cert))
}

// CheckSignerAttributes checks the ESS signing-certificate-v2 signed
// attribute of the only signer of p7, when there is one, against cert
// (see CheckSigningCertificateV2). More than one such attribute is an
// error. A signature without the attribute passes: PEC messages of other
// gestori rarely carry it.
func CheckSignerAttributes(p7 *pkcs7.PKCS7, cert *x509.Certificate) error {
	if p7 == nil || len(p7.Signers) != 1 {
		return errors.New("signing-certificate-v2: want a signature with exactly one signer")
	}
	n := 0
	for _, a := range p7.Signers[0].AuthenticatedAttributes {
		if !a.Type.Equal(OIDSigningCertificateV2) {
			continue
		}
		if n++; n > 1 {
			return errors.New("signing-certificate-v2 attribute appears more than once")
		}
		if err := CheckSigningCertificateV2(a.Value.Bytes, cert); err != nil {
			return err
		}
	}
	return nil
}
