package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

// roleCert makes a certificate from tmpl's role fields, self-signed: the
// role rule looks at the certificate alone.
func roleCert(t *testing.T, tmpl x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(7)
	if tmpl.Subject.CommonName == "" {
		tmpl.Subject = pkix.Name{CommonName: "Posta Certificata Alfa", Organization: []string{"Alfa PEC S.p.A."}}
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The role of a gestore's signing certificate (BUNDLE.md "Who signs"):
// TLS, TSA, CA and other certificates are refused, each for its reason.
func TestCheckGestoreRole(t *testing.T) {
	mail := []string{"posta-certificata@pec.alfa.test"}
	for _, tt := range []struct {
		name string
		tmpl x509.Certificate
		want string // "" for accepted
	}{
		{"gestore", x509.Certificate{EmailAddresses: mail, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, KeyUsage: x509.KeyUsageDigitalSignature}, ""},
		{"gestore without usages", x509.Certificate{EmailAddresses: mail}, ""},
		{"TLS server", x509.Certificate{EmailAddresses: mail, DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageEmailProtection}}, "TLS server certificate"},
		{"TSA", x509.Certificate{EmailAddresses: mail, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}, "time-stamping authority"},
		{"CA", x509.Certificate{EmailAddresses: mail, IsCA: true, KeyUsage: x509.KeyUsageCertSign}, "CA certificate"},
		{"any usage", x509.Certificate{EmailAddresses: mail, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, "an extended key usage a gestore's"},
		{"code signing", x509.Certificate{EmailAddresses: mail, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection}}, "an extended key usage a gestore's"},
		{"client only", x509.Certificate{EmailAddresses: mail, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, "does not allow e-mail protection"},
		{"no service address", x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}, "no e-mail address"},
		{"encipherment only", x509.Certificate{EmailAddresses: mail, KeyUsage: x509.KeyUsageKeyEncipherment}, "does not allow digital signatures"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckGestoreRole(roleCert(t, tt.tmpl))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// An earlier certificate of the same gestore has its subject and
// subjectAltName byte for byte; another gestore's, or one without a
// subjectAltName, is not the same gestore.
func TestSameGestore(t *testing.T) {
	mail := []string{"posta-certificata@pec.alfa.test"}
	cur := roleCert(t, x509.Certificate{EmailAddresses: mail})
	for _, tt := range []struct {
		name string
		tmpl x509.Certificate
		want bool
	}{
		{"renewed", x509.Certificate{EmailAddresses: mail}, true},
		{"other address", x509.Certificate{EmailAddresses: []string{"posta-certificata@pec.beta.test"}}, false},
		{"other subject", x509.Certificate{Subject: pkix.Name{CommonName: "Posta Certificata Beta"}, EmailAddresses: mail}, false},
		{"no subjectAltName", x509.Certificate{}, false},
	} {
		if got := SameGestore(roleCert(t, tt.tmpl), cur); got != tt.want {
			t.Errorf("%s: SameGestore %v, want %v", tt.name, got, tt.want)
		}
	}
}
