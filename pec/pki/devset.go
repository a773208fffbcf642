package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names of a development set in its directory.
const (
	CACertFile      = "ca.pem"
	CAKeyFile       = "ca.key"
	GestoreCertFile = "gestore.pem"
	GestoreKeyFile  = "gestore.key"
	TSACertFile     = "tsa.pem"
	TSAKeyFile      = "tsa.key"
)

// DevSet is the development PKI of the embedded default: a CA, the
// gestore's signing certificate and a TSA certificate issued by it.
type DevSet struct {
	CA      *KeyPair
	Gestore *KeyPair
	TSA     *KeyPair
}

// NewDevSet makes a development PKI for the gestore providerName whose mail
// domain is domain, valid from now for ten years (the CA) and three years
// (the others).
func NewDevSet(providerName, domain string, now time.Time) (*DevSet, error) {
	nb := now.Add(-time.Hour)
	ca, err := NewCA(pkix.Name{
		Country:      []string{"IT"},
		Organization: []string{providerName},
		CommonName:   providerName + " development CA (not for production)",
	}, nb, now.AddDate(10, 0, 0))
	if err != nil {
		return nil, err
	}
	g, err := IssueGestore(ca, providerName, domain, nb, now.AddDate(3, 0, 0))
	if err != nil {
		return nil, err
	}
	t, err := IssueTSA(ca, pkix.Name{
		Country:      []string{"IT"},
		Organization: []string{providerName},
		CommonName:   providerName + " development TSA",
	}, nb, now.AddDate(3, 0, 0))
	if err != nil {
		return nil, err
	}
	return &DevSet{CA: ca, Gestore: g, TSA: t}, nil
}

// WriteDir writes the set to dir (created if missing) under the file names
// above; private keys are readable by the owner only.
func (s *DevSet) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for _, f := range []struct {
		kp        *KeyPair
		cert, key string
	}{{s.CA, CACertFile, CAKeyFile}, {s.Gestore, GestoreCertFile, GestoreKeyFile}, {s.TSA, TSACertFile, TSAKeyFile}} {
		if err := f.kp.WriteFiles(filepath.Join(dir, f.cert), filepath.Join(dir, f.key)); err != nil {
			return err
		}
	}
	return nil
}

// LoadDevSet reads a set written by WriteDir.
func LoadDevSet(dir string) (*DevSet, error) {
	var s DevSet
	for _, f := range []struct {
		kp        **KeyPair
		cert, key string
	}{{&s.CA, CACertFile, CAKeyFile}, {&s.Gestore, GestoreCertFile, GestoreKeyFile}, {&s.TSA, TSACertFile, TSAKeyFile}} {
		kp, err := LoadKeyPair(filepath.Join(dir, f.cert), filepath.Join(dir, f.key))
		if err != nil {
			return nil, err
		}
		*f.kp = kp
	}
	return &s, nil
}

// Roots returns a pool holding only the set's CA.
func (s *DevSet) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.CA.Certificate)
	return p
}
