package ledger

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/custode/custode/pec/smime"
	"github.com/digitorus/pkcs7"
)

// MaxSignatureBytes caps a detached signature before it reaches the CMS
// parser: crafted BER nesting of a few megabytes overflows the parser's
// stack, which no recover can catch. Real signatures are a few kilobytes.
const MaxSignatureBytes = 1 << 20

// CMSSigner signs with the gestore's key: detached CMS SignedData, SHA-256,
// carrying the signer certificate and its chain and, as a signed attribute,
// an ESS signing-certificate-v2 naming the signer certificate
// (smime.SigningCertificateV2).
type CMSSigner struct {
	Certificate *x509.Certificate
	Key         crypto.Signer
	// Chain holds the intermediates (and optionally the root) to embed.
	Chain []*x509.Certificate
}

// SignDetached returns a DER CMS SignedData over data, without the data.
func (s *CMSSigner) SignDetached(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger: sign: %w", err)
	}
	if s.Certificate == nil || s.Key == nil {
		return nil, errors.New("ledger: sign: no certificate or key")
	}
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("ledger: sign: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	ess, err := smime.SigningCertificateV2(s.Certificate)
	if err != nil {
		return nil, fmt.Errorf("ledger: sign: %w", err)
	}
	if err := sd.AddSignerChain(s.Certificate, s.Key, s.Chain, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{ess}}); err != nil {
		return nil, fmt.Errorf("ledger: sign as %s: %w", s.Certificate.Subject, err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("ledger: sign: %w", err)
	}
	return der, nil
}

// VerifyDetached checks a detached CMS signature over data: the signature
// itself, the ESS signing-certificate-v2 attribute when present (it must
// name the signer certificate) and the signer's chain to roots as of at. It
// returns the signer certificate.
func VerifyDetached(data, sig []byte, roots, intermediates *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	if len(sig) > MaxSignatureBytes {
		return nil, fmt.Errorf("ledger: verify signature: %d bytes, more than %d", len(sig), MaxSignatureBytes)
	}
	if roots == nil {
		return nil, errors.New("ledger: verify signature: no trust anchors")
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return nil, fmt.Errorf("ledger: verify signature: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("ledger: verify signature: %d signers, want 1", len(p7.Signers))
	}
	p7.Content = data
	if err := p7.VerifyWithOpts(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("ledger: verify signature: %w", err)
	}
	signer := p7.GetOnlySigner()
	if err := smime.CheckSignerAttributes(p7, signer); err != nil {
		return nil, fmt.Errorf("ledger: verify signature: %w", err)
	}
	return signer, nil
}
