package smime_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"strings"
	"time"

	"github.com/custode/custode/pec/smime"
)

// A gestore signs a ricevuta di accettazione and a recipient verifies it.
func Example() {
	root, signer := exampleGestore()

	entity := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Ricevuta di accettazione del messaggio \"prova\".\r\n")
	msg, err := smime.SignMessage([]smime.Field{
		{Name: "Date", Value: "Sat, 7 Nov 2026 16:52:00 +0100"},
		{Name: "From", Value: "posta-certificata@pec.example.it"},
		{Name: "To", Value: "mario.rossi@pec.example.it"},
		{Name: "Subject", Value: "ACCETTAZIONE: prova"},
		{Name: "X-Ricevuta", Value: "accettazione"},
	}, entity, signer)
	if err != nil {
		log.Fatal(err)
	}

	res, err := smime.Verify(msg, smime.VerifyOptions{
		Roots:       []*x509.Certificate{root},
		CurrentTime: time.Now(), // for archived evidence: UseSigningTime
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.From, res.Digest, res.Signer.Subject.CommonName)

	// One byte changed in the signed part breaks the signature.
	altered := []byte(strings.Replace(string(msg), `messaggio "prova"`, `messaggio "prove"`, 1))
	_, err = smime.Verify(altered, smime.VerifyOptions{Roots: []*x509.Certificate{root}, CurrentTime: time.Now()})
	fmt.Println(errors.Is(err, smime.ErrContentMismatch), err)
	// Output:
	// posta-certificata@pec.example.it SHA-256 Posta Certificata
	// true smime: signature does not match the signed content
}

// exampleGestore makes a throwaway root CA and a gestore signing identity.
// A real gestore loads its own with smime.LoadKeyPair.
func exampleGestore() (*x509.Certificate, *smime.Signer) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example PEC CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		log.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"Example PEC S.p.A."}, CommonName: "Posta Certificata"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, EmailAddresses: []string{"posta-certificata@pec.example.it"},
	}, root, key.Public(), caKey)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return root, &smime.Signer{Key: key, Certificate: cert}
}
