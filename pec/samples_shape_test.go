package pec

import (
	"regexp"
	"strings"
	"testing"
)

// signatureShape matches what a parser that looks for the S/MIME signature
// by exact strings finds in a message: the protocol parameter of
// multipart/signed and the signature part's Content-Type line.
var signatureShape = []*regexp.Regexp{
	regexp.MustCompile(`(?m)^Content-Type: multipart/signed; protocol="application/x-pkcs7-signature";`),
	regexp.MustCompile(`(?m)^Content-Type: application/x-pkcs7-signature; name="smime\.p7s"\r?$`),
}

// TestSignatureShapeAsAruba checks that the signature of the messages we
// build is written as in the real Aruba messages of shared/pec-samples:
// a parser that matches Aruba's exact strings finds ours.
func TestSignatureShapeAsAruba(t *testing.T) {
	for _, name := range []string{
		"01_aruba_2014_busta-trasporto_completa.eml",
		"02_aruba_2014_ricevuta-accettazione.eml",
		"03_aruba_2014_ricevuta-avvenuta-consegna_completa.eml",
	} {
		sample := string(readSample(t, name))
		for _, re := range signatureShape {
			if !re.MatchString(sample) {
				t.Fatalf("%s does not match %s: the reference changed", name, re)
			}
		}
	}
	g := newGestore(t)
	tx := newTransaction(t, g)
	acc, err := g.Accettazione(tx)
	if err != nil {
		t.Fatal(err)
	}
	busta, err := g.BustaTrasporto(tx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*Built{acc, busta} {
		msg := string(b.Message)
		for _, re := range signatureShape {
			if !re.MatchString(msg) {
				t.Errorf("%s does not match %s:\n%s", b.Kind, re, msg[:strings.Index(msg, "\r\n\r\n")])
			}
		}
	}
}
