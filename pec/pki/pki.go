package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/custode/custode/tsa"
)

// RSABits is the size of every RSA key this package makes. RFC 6109 §5.5
// and the CNIPA rules want at least 2048 bits.
const RSABits = 2048

// KeyPair is a certificate with its private key and the chain above it
// (intermediates, not the root).
type KeyPair struct {
	Certificate *x509.Certificate
	Key         crypto.Signer
	Chain       []*x509.Certificate
}

// String names the certificate; it never shows the key.
func (kp *KeyPair) String() string {
	if kp == nil || kp.Certificate == nil {
		return "<no certificate>"
	}
	return kp.Certificate.Subject.String()
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func skid(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(der)
	return sum[:], nil
}

// NewCA makes a self-signed development CA valid from notBefore to notAfter.
func NewCA(name pkix.Name, notBefore, notAfter time.Time) (*KeyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("pki: CA serial: %w", err)
	}
	id, err := skid(key.Public())
	if err != nil {
		return nil, fmt.Errorf("pki: CA key id: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               name,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          id,
	}
	return issue(tmpl, nil, key)
}

// GestoreTemplate returns the profile of RFC 6109 §5.5 for the signing
// certificate of a gestore: the provider's name in the subject, the
// mailbox posta-certificata@domain as rfc822Name subjectAltName,
// KeyUsage digitalSignature marked critical, and no BasicConstraints.
func GestoreTemplate(providerName, domain string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{
			Country:      []string{"IT"},
			Organization: []string{providerName},
			CommonName:   "Posta Certificata " + providerName,
		},
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		EmailAddresses: []string{"posta-certificata@" + domain},
	}
}

// IssueGestore makes a new RSA key and a gestore signing certificate for it
// (GestoreTemplate), signed by ca.
func IssueGestore(ca *KeyPair, providerName, domain string, notBefore, notAfter time.Time) (*KeyPair, error) {
	if providerName == "" || domain == "" {
		return nil, errors.New("pki: gestore certificate: provider name and domain are required")
	}
	key, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("pki: gestore key: %w", err)
	}
	return issue(GestoreTemplate(providerName, domain, notBefore, notAfter), ca, key)
}

// IssueTSA makes a new RSA key and a time-stamping certificate for it
// (tsa.CertificateTemplate: critical timeStamping EKU), signed by ca.
func IssueTSA(ca *KeyPair, name pkix.Name, notBefore, notAfter time.Time) (*KeyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("pki: TSA key: %w", err)
	}
	return issue(tsa.CertificateTemplate(name, notBefore, notAfter), ca, key)
}

// issue signs tmpl for key with ca, or self-signs it when ca is nil.
func issue(tmpl *x509.Certificate, ca *KeyPair, key crypto.Signer) (*KeyPair, error) {
	var err error
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = serial(); err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
	}
	if tmpl.SubjectKeyId == nil {
		if tmpl.SubjectKeyId, err = skid(key.Public()); err != nil {
			return nil, fmt.Errorf("pki: key id: %w", err)
		}
	}
	parent, signer := tmpl, key
	var chain []*x509.Certificate
	if ca != nil {
		parent, signer = ca.Certificate, ca.Key
		chain = append(chain, ca.Chain...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", tmpl.Subject, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", tmpl.Subject, err)
	}
	return &KeyPair{Certificate: cert, Key: key, Chain: chain}, nil
}

// WriteFiles writes the certificate followed by its chain to certPath and
// the private key (PKCS #8) to keyPath, readable by the owner only.
func (kp *KeyPair) WriteFiles(certPath, keyPath string) error {
	var certPEM []byte
	for _, c := range append([]*x509.Certificate{kp.Certificate}, kp.Chain...) {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: write certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return fmt.Errorf("pki: encode private key of %s: %w", kp.Certificate.Subject, err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("pki: write private key of %s: %w", kp.Certificate.Subject, err)
	}
	return nil
}

// LoadKeyPair reads a PEM certificate file (the certificate, then its
// chain) and a PEM private key file (PKCS #8, PKCS #1 or SEC 1). It checks
// that the key matches the certificate. Errors never include key material.
func LoadKeyPair(certPath, keyPath string) (*KeyPair, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read private key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: private key %s: no PEM block", keyPath)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: private key %s: unexpected PEM block %q", keyPath, block.Type)
	}
	if err != nil {
		// The parser's error names no key bytes.
		return nil, fmt.Errorf("pki: private key %s: %w", keyPath, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: private key %s: not a signing key", keyPath)
	}
	if !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("pki: private key %s does not match certificate %s", keyPath, certs[0].Subject)
	}
	return &KeyPair{Certificate: certs[0], Key: signer, Chain: certs[1:]}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		return a.Equal(b)
	case *ecdsa.PublicKey:
		return a.Equal(b)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

// MaxCertificateFile bounds a PEM file of certificates that LoadCertificates
// reads: far above a chain or a system's bundle of roots (about 0.2 MiB).
const MaxCertificateFile = 8 << 20

// LoadCertificates reads every certificate of a PEM file, in order; a file
// over MaxCertificateFile is refused.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: read certificates: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCertificateFile+1))
	if err != nil {
		return nil, fmt.Errorf("pki: read certificates: %w", err)
	}
	if len(data) > MaxCertificateFile {
		return nil, fmt.Errorf("pki: %s is larger than %d bytes: refused", path, MaxCertificateFile)
	}
	certs, err := ParseCertificates(data, path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return certs, nil
}

// ParseCertificates returns every certificate of PEM data, in order,
// skipping blocks of other types; name says where data came from in
// errors. Data with no certificate is an error.
func ParseCertificates(data []byte, name string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of %s: %w", len(certs)+1, name, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", name)
	}
	return certs, nil
}

// LoadPool reads a PEM file of trust anchors into a pool.
func LoadPool(path string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// TLSServerTemplate is the certificate of a TLS server (the gestore's SMTP
// and IMAP points) reachable under hosts: DNS names and IP addresses, the
// first of which is also its common name.
func TLSServerTemplate(hosts []string, notBefore, notAfter time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	return tmpl
}

// IssueTLSServer makes a new RSA key and a TLS server certificate for hosts
// (TLSServerTemplate), signed by ca. Its extended key usages allow both
// server and client authentication, so a gestore presents the same
// certificate when it connects to another gestore.
func IssueTLSServer(ca *KeyPair, hosts []string, notBefore, notAfter time.Time) (*KeyPair, error) {
	if len(hosts) == 0 {
		return nil, errors.New("pki: TLS certificate: at least one host name or address is required")
	}
	key, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, fmt.Errorf("pki: TLS key: %w", err)
	}
	return issue(TLSServerTemplate(hosts, notBefore, notAfter), ca, key)
}
