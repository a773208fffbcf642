package ledger

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/custode/custode/pec/smime"
	"github.com/digitorus/pkcs7"
)

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
