package smime

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"
)

// TestSignCarriesSigningCertificateV2 checks that Sign adds the ESS
// signing-certificate-v2 attribute, that it names the signer, and that
// OpenSSL both verifies the message and shows the attribute.
func TestSignCarriesSigningCertificateV2(t *testing.T) {
	for _, tt := range []struct {
		name string
		pki  func() (*testPKI, error)
	}{
		{"rsa", rsaPKI},
		{"ecdsa", ecdsaPKI},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPKI(t, tt.pki)
			msg := signedMsg(t, p, p.address(), pecEntity(2000, false))
			if _, err := opensslVerify(t, msg, p.rootPEM()); err != nil {
				t.Fatal(err)
			}
			p7s, err := SignatureOf(msg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Verify(msg, p.opts(time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(res.Signature, p7s) {
				t.Fatal("SignatureOf does not return the signature Verify checks")
			}
			sig, err := ParseSignature(p7s)
			if err != nil {
				t.Fatal(err)
			}
			if sig.essV2 == nil {
				t.Fatal("the signature has no signing-certificate-v2 attribute")
			}
			if err := CheckSigningCertificateV2(sig.essV2, p.signer.Certificate); err != nil {
				t.Fatalf("the attribute does not name the signer: %v", err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "sig.p7s"), p7s, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(openssl(t), "cms", "-cmsout", "-print", "-inform", "DER", "-in", filepath.Join(dir, "sig.p7s")).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl cms -print: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "id-smime-aa-signingCertificateV2") {
				t.Fatalf("openssl cms -print does not show signingCertificateV2:\n%s", out)
			}
		})
	}
}

// essDER encodes a SigningCertificateV2 by hand, for tests.
func essDER(t *testing.T, ids ...essCertIDv2) []byte {
	t.Helper()
	der, err := asn1.Marshal(signingCertificateV2{Certs: ids})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func issuerSerial(t *testing.T, issuer []byte, serial *big.Int) essIssuerSerial {
	t.Helper()
	dn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: issuer})
	if err != nil {
		t.Fatal(err)
	}
	return essIssuerSerial{Issuer: asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: dn}, Serial: serial}
}

func TestCheckSigningCertificateV2(t *testing.T) {
	cert := mustPKI(t, rsaPKI).signer.Certificate
	other := mustPKI(t, ecdsaPKI).signer.Certificate
	own, err := SigningCertificateV2(cert)
	if err != nil {
		t.Fatal(err)
	}
	ownDER := own.Value.(asn1.RawValue).FullBytes
	s256 := sha256.Sum256(cert.Raw)
	s512 := sha512.Sum512(cert.Raw)
	is := issuerSerial(t, cert.RawIssuer, cert.SerialNumber)
	tests := []struct {
		name   string
		values []byte
		cert   *x509.Certificate
		want   string // "" for success
	}{
		{"own", ownDER, cert, ""},
		{"other certificate", ownDER, other, "names another certificate"},
		{"no issuerSerial", essDER(t, essCertIDv2{CertHash: s256[:]}), cert, ""},
		{"SHA-512", essDER(t, essCertIDv2{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA512}, CertHash: s512[:], IssuerSerial: is}), cert, ""},
		{"SHA-1 named", essDER(t, essCertIDv2{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1}, CertHash: s256[:20]}), cert, "only SHA-256"},
		{"wrong serial", essDER(t, essCertIDv2{CertHash: s256[:], IssuerSerial: issuerSerial(t, cert.RawIssuer, big.NewInt(42))}), cert, "serial number"},
		{"wrong issuer", essDER(t, essCertIDv2{CertHash: s256[:], IssuerSerial: issuerSerial(t, cert.RawSubject, cert.SerialNumber)}), cert, "another issuer"},
		{"no certificate", essDER(t), cert, "names no certificate"},
		{"two values", append(bytes.Clone(ownDER), ownDER...), cert, "more than one value"},
		{"garbage", []byte{0x30, 0x03, 0x01}, cert, "malformed"},
		{"empty", nil, cert, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSigningCertificateV2(tt.values, tt.cert)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckSigningCertificateV2: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// signWithAttrs makes a detached CMS signature over content by p's signer
// with the signed attributes given.
func signWithAttrs(t *testing.T, p *testPKI, content []byte, attrs ...pkcs7.Attribute) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(p.signer.Certificate, p.signer.Key, p.signer.Chain, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCheckContentSigningCertificateV2 checks that a signature whose
// signing-certificate-v2 names another certificate than its signer's is
// invalid, and that one without the attribute (as other gestori send) is
// not refused for that.
func TestCheckContentSigningCertificateV2(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	other := mustPKI(t, ecdsaPKI).signer.Certificate
	content := []byte("Content-Type: text/plain\r\n\r\nciao\r\n")
	own, err := SigningCertificateV2(p.signer.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := SigningCertificateV2(other)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		attrs []pkcs7.Attribute
		parse error // expected from ParseSignature
		check error // expected from CheckContent
	}{
		{"own", []pkcs7.Attribute{own}, nil, nil},
		{"absent", nil, nil, nil},
		{"another certificate", []pkcs7.Attribute{foreign}, nil, ErrInvalidSignature},
		{"twice", []pkcs7.Attribute{own, own}, ErrMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := ParseSignature(signWithAttrs(t, p, content, tt.attrs...))
			if !errors.Is(err, tt.parse) || (tt.parse == nil) != (err == nil) {
				t.Fatalf("ParseSignature: %v, want %v", err, tt.parse)
			}
			if err != nil {
				return
			}
			err = sig.CheckContent(content)
			if !errors.Is(err, tt.check) || (tt.check == nil) != (err == nil) {
				t.Fatalf("CheckContent: %v, want %v", err, tt.check)
			}
		})
	}
}

func TestSignatureOf(t *testing.T) {
	p := mustPKI(t, ecdsaPKI)
	msg := signedMsg(t, p, p.address(), pecEntity(500, false))
	tests := []struct {
		name string
		msg  []byte
		want error // nil: a signature that parses
	}{
		{"signed", msg, nil},
		{"plain", []byte("From: a@b.example\r\nContent-Type: text/plain\r\n\r\nciao\r\n"), ErrNotSigned},
		{"too large", make([]byte, DefaultMaxMessageSize+1), ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p7s, err := SignatureOf(tt.msg)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("error %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseSignature(p7s); err != nil {
				t.Fatalf("the signature returned does not parse: %v", err)
			}
		})
	}
}
