package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/custode/custode/pec/smime"
)

// MaxSignatureBytes caps a detached signature before it reaches the CMS
// parser: crafted BER nesting of a few megabytes overflows the parser's
// stack, which no recover can catch. Real signatures are a few kilobytes.
const MaxSignatureBytes = 1 << 20

// VerifyDetached checks a detached CMS signature over data: its form
// (CheckSignatureProfile), the signature itself, the ESS
// signing-certificate-v2 attribute when present (it must name the signer
// certificate) and the signer's chain to roots as of at. It returns the
// signer certificate.
func VerifyDetached(data, sig []byte, roots, intermediates *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	signer, err := verifyDetached(data, sig, roots, intermediates, at)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return signer, nil
}

// verifyDetached is VerifyDetached, its errors without the package's name.
func verifyDetached(data, sig []byte, roots, intermediates *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	if len(sig) > MaxSignatureBytes {
		return nil, fmt.Errorf("signature: %d bytes, more than %d", len(sig), MaxSignatureBytes)
	}
	if roots == nil {
		return nil, errors.New("signature: no trust anchors")
	}
	if err := CheckSignatureProfile(sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("signature: %d signers, want 1", len(p7.Signers))
	}
	p7.Content = data
	if err := p7.VerifyWithOpts(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	signer := p7.GetOnlySigner()
	if err := smime.CheckSignerAttributes(p7, signer); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return signer, nil
}
