package smime

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// ParseKeyPair returns the Signer held in a pair of PEM blocks: certPEM
// holds the signer certificate followed by its chain, keyPEM the private key
// (PKCS #1, PKCS #8 or SEC 1). It checks that the key matches the
// certificate; its errors never include key material.
func ParseKeyPair(certPEM, keyPEM []byte) (*Signer, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("smime: key pair: %w", err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("smime: key pair: the private key cannot sign")
	}
	s := &Signer{Key: key}
	for i, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("smime: key pair: certificate %d: %w", i+1, err)
		}
		if i == 0 {
			s.Certificate = c
		} else {
			s.Chain = append(s.Chain, c)
		}
	}
	return s, nil
}

// LoadKeyPair reads the files certFile and keyFile and parses them with
// ParseKeyPair.
func LoadKeyPair(certFile, keyFile string) (*Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("smime: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("smime: %w", err)
	}
	return ParseKeyPair(certPEM, keyPEM)
}

// ParseCertificatesPEM returns the certificates in the PEM CERTIFICATE
// blocks of data, in order, skipping blocks of other types. It fails on a
// certificate that does not parse, naming its position.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("smime: PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
}
