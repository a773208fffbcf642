package tsa

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// testPolicy is the TSA policy OID of the tests (an arc under the example
// private enterprise number).
var testPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}

// testPKI is a CA, optionally an intermediate CA, and a TSA certificate
// issued from them.
type testPKI struct {
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate // nil without an intermediate
	tsa      *x509.Certificate
	tsaKey   crypto.Signer
	chain    []*x509.Certificate // the TSA certificate's issuers, issuer first
	roots    *x509.CertPool
	notAfter time.Time
}

// pkiOptions shape a testPKI. The zero value is an ECDSA P-256 root that
// directly issues a TSA certificate valid from an hour ago for a day, with
// the critical timeStamping EKU.
type pkiOptions struct {
	key            string // "ecdsa" (default), "rsa" or "ed25519"
	intermediate   bool
	nonCriticalEKU bool
	notBefore      time.Time
	notAfter       time.Time
}

func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "", "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key type %q", kind)
	}
	if err != nil {
		t.Fatalf("generating %s key: %v", kind, err)
	}
	return k
}

func caTemplate(name string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Custode test"}, CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

func newPKI(t testing.TB, o pkiOptions) *testPKI {
	t.Helper()
	now := time.Now()
	// The CAs are valid from two days ago for ten years, or longer if the
	// TSA certificate asks for it.
	caFrom, caUntil := now.Add(-48*time.Hour), now.Add(10*365*24*time.Hour)
	if !o.notBefore.IsZero() && o.notBefore.Before(caFrom) {
		caFrom = o.notBefore
	}
	if o.notAfter.After(caUntil) {
		caUntil = o.notAfter
	}
	p := &testPKI{rootKey: newKey(t, o.key)}
	rootTmpl := caTemplate("Custode test root", caFrom, caUntil)
	p.root = mustCert(t, rootTmpl, rootTmpl, p.rootKey.Public(), p.rootKey)
	issuer, issuerKey := p.root, p.rootKey
	if o.intermediate {
		k := newKey(t, o.key)
		p.inter = mustCert(t, caTemplate("Custode test intermediate", caFrom, caUntil), p.root, k.Public(), p.rootKey)
		issuer, issuerKey = p.inter, k
		p.chain = []*x509.Certificate{p.inter, p.root}
	} else {
		p.chain = []*x509.Certificate{p.root}
	}
	nb, na := o.notBefore, o.notAfter
	if nb.IsZero() {
		nb = now.Add(-time.Hour)
	}
	if na.IsZero() {
		na = now.Add(24 * time.Hour)
	}
	p.notAfter = na
	tmpl := CertificateTemplate(pkix.Name{Organization: []string{"Custode test"}, CommonName: "Custode test TSA"}, nb, na)
	if o.nonCriticalEKU {
		tmpl.ExtraExtensions = nil
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
	}
	p.tsaKey = newKey(t, o.key)
	p.tsa = mustCert(t, tmpl, issuer, p.tsaKey.Public(), issuerKey)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root)
	return p
}

// authority returns an Authority for p with the given clock (nil: real).
func (p *testPKI) authority(t testing.TB, now func() time.Time) *Authority {
	t.Helper()
	a, err := NewAuthority(AuthorityConfig{
		Certificate: p.tsa,
		Signer:      p.tsaKey,
		Chain:       p.chain,
		Policy:      testPolicy,
		Now:         now,
	})
	if err != nil {
		t.Fatalf("NewAuthority: %v", err)
	}
	return a
}

// rawToken signs a token with digitorus/timestamp directly, bypassing the
// checks of NewAuthority, to build tokens an Authority would refuse to
// issue.
func rawToken(t testing.TB, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate,
	digest []byte, nonce *big.Int, certs bool, genTime time.Time) []byte {
	t.Helper()
	ts := timestamp.Timestamp{
		HashAlgorithm:     crypto.SHA256,
		HashedMessage:     digest,
		Time:              genTime,
		Accuracy:          time.Second,
		Policy:            testPolicy,
		Nonce:             nonce,
		AddTSACertificate: certs,
		Certificates:      chain,
	}
	resp, err := ts.CreateResponseWithOpts(cert, key, crypto.SHA256)
	if err != nil {
		t.Fatalf("CreateResponseWithOpts: %v", err)
	}
	return tokenOf(t, resp)
}

// tokenOf returns the TimeStampToken inside a granted DER TimeStampResp.
func tokenOf(t testing.TB, resp []byte) []byte {
	t.Helper()
	var r timeStampResp
	if _, err := asn1.Unmarshal(resp, &r); err != nil {
		t.Fatalf("parsing TimeStampResp: %v", err)
	}
	if r.Status.Status != 0 || len(r.Token.FullBytes) == 0 {
		t.Fatalf("TimeStampResp status %d, token %d bytes", r.Status.Status, len(r.Token.FullBytes))
	}
	return r.Token.FullBytes
}

// issueHTTP asks a's ServeHTTP for a token, as a Client would but with the
// request fields chosen by the test.
func issueHTTP(t testing.TB, a *Authority, digest []byte, nonce *big.Int, certs bool) []byte {
	t.Helper()
	req := timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest, Nonce: nonce, Certificates: certs}
	der, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rec := postQuery(a, der)
	if rec.Code != 200 {
		t.Fatalf("ServeHTTP: HTTP %d: %s", rec.Code, rec.Body)
	}
	return tokenOf(t, rec.Body.Bytes())
}

func sum(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func stamp(t testing.TB, s Stamper, digest []byte) []byte {
	t.Helper()
	tok, err := s.Timestamp(context.Background(), digest)
	if err != nil {
		t.Fatalf("Timestamp: %v", err)
	}
	return tok
}
