package tsa_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"log"
	"time"

	"github.com/custode/custode/tsa"
)

// This example issues a TSA certificate from a CA, runs a built-in
// Authority with it, time-stamps a message and verifies the token.
func Example() {
	genTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// A CA, as the dev PKI would have.
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Custode example CA"},
		NotBefore:             genTime.AddDate(-1, 0, 0),
		NotAfter:              genTime.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		log.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		log.Fatal(err)
	}

	// The TSA certificate, in the RFC 3161 profile.
	tsaKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := tsa.CertificateTemplate(pkix.Name{CommonName: "Custode example TSA"}, genTime.AddDate(0, -1, 0), genTime.AddDate(1, 0, 0))
	tsaDER, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, tsaKey.Public(), caKey)
	if err != nil {
		log.Fatal(err)
	}
	tsaCert, err := x509.ParseCertificate(tsaDER)
	if err != nil {
		log.Fatal(err)
	}

	a, err := tsa.NewAuthority(tsa.AuthorityConfig{
		Certificate: tsaCert,
		Signer:      tsaKey,
		Chain:       []*x509.Certificate{caCert},
		Policy:      asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1},
		Now:         func() time.Time { return genTime }, // a fixed clock, for the output below
	})
	if err != nil {
		log.Fatal(err)
	}

	digest := sha256.Sum256([]byte("Ricevuta di avvenuta consegna"))
	token, err := a.Timestamp(context.Background(), digest[:])
	if err != nil {
		log.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	info, err := tsa.Verify(token, digest[:], tsa.VerifyOptions{Roots: roots})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("time:", info.GenTime)
	fmt.Println("policy:", info.Policy)
	fmt.Println("TSA:", info.Certificate.Subject.CommonName)

	// The same token does not vouch for other data.
	other := sha256.Sum256([]byte("Ricevuta contraffatta"))
	_, err = tsa.Verify(token, other[:], tsa.VerifyOptions{Roots: roots})
	fmt.Println(err)

	// Output:
	// time: 2026-01-02 03:04:05 +0000 UTC
	// policy: 1.3.6.1.4.1.32473.1.1
	// TSA: Custode example TSA
	// tsa: verify: message imprint does not match the data
}
