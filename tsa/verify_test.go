package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		pki  pkiOptions
		http bool
	}{
		{"ecdsa/in-process", pkiOptions{}, false},
		{"ecdsa/http", pkiOptions{}, true},
		{"rsa/in-process", pkiOptions{key: "rsa"}, false},
		{"rsa/http", pkiOptions{key: "rsa"}, true},
		{"intermediate/http", pkiOptions{intermediate: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t, tt.pki)
			clock := time.Now().Add(-time.Minute).Truncate(time.Second)
			a := p.authority(t, func() time.Time { return clock })
			var s Stamper = a
			if tt.http {
				srv := httptest.NewServer(a)
				defer srv.Close()
				s = &Client{URL: srv.URL, HTTPClient: srv.Client(), Roots: p.roots, Policy: testPolicy}
			}
			digest := sum("una PEC qualunque")
			tok := stamp(t, s, digest)

			info, err := Verify(tok, digest, VerifyOptions{Roots: p.roots})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !info.GenTime.Equal(clock) {
				t.Errorf("GenTime = %v, want %v", info.GenTime, clock)
			}
			if !info.Policy.Equal(testPolicy) {
				t.Errorf("Policy = %v, want %v", info.Policy, testPolicy)
			}
			if info.HashAlgorithm != crypto.SHA256 {
				t.Errorf("HashAlgorithm = %v, want SHA-256", info.HashAlgorithm)
			}
			if info.Accuracy != DefaultAccuracy {
				t.Errorf("Accuracy = %v, want %v", info.Accuracy, DefaultAccuracy)
			}
			if !info.Certificate.Equal(p.tsa) {
				t.Errorf("Certificate = %q, want the TSA certificate", info.Certificate.Subject)
			}
			if info.SerialNumber == nil || info.SerialNumber.Sign() <= 0 {
				t.Errorf("SerialNumber = %v, want a positive number", info.SerialNumber)
			}
			if want := len(p.chain) + 1; len(info.Chain) != want {
				t.Errorf("len(Chain) = %d, want %d", len(info.Chain), want)
			}
			if tt.http && info.Nonce == nil {
				t.Errorf("Nonce = nil, want the client's nonce")
			}
			// Verifying at a later time within the certificate's validity
			// works too.
			if _, err := Verify(tok, digest, VerifyOptions{Roots: p.roots, CurrentTime: time.Now()}); err != nil {
				t.Errorf("Verify at now: %v", err)
			}
		})
	}
}

func TestVerifyNoCertToken(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	digest := sum("senza certificati")
	nonce := big.NewInt(424242)
	tok := issueHTTP(t, a, digest, nonce, false)
	p7, err := pkcs7.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Certificates) != 0 {
		t.Fatalf("token embeds %d certificates, want none", len(p7.Certificates))
	}
	info, err := Verify(tok, digest, VerifyOptions{Roots: p.roots, TSACertificate: p.tsa, Nonce: nonce})
	if err != nil {
		t.Fatalf("Verify with TSACertificate: %v", err)
	}
	if info.Nonce.Cmp(nonce) != 0 {
		t.Errorf("Nonce = %v, want %v", info.Nonce, nonce)
	}
}

// flipAt returns a copy of b with the byte at i inverted.
func flipAt(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}

// flipSignature flips a byte in the middle of the token's signature value.
func flipSignature(t *testing.T, tok []byte) []byte {
	t.Helper()
	p7, err := pkcs7.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	sig := p7.Signers[0].EncryptedDigest
	i := bytes.Index(tok, sig)
	if i < 0 {
		t.Fatal("signature not found in token")
	}
	return flipAt(tok, i+len(sig)/2)
}

// retarget rewrites the message imprint inside tok from digest to a digest
// of other data, as someone backdating other data would, and returns the
// altered token and the new digest.
func retarget(t *testing.T, tok, digest []byte) ([]byte, []byte) {
	t.Helper()
	other := sum("documento falsificato")
	i := bytes.Index(tok, digest)
	if i < 0 {
		t.Fatal("imprint not found in token")
	}
	forged := bytes.Clone(tok)
	copy(forged[i:], other)
	return forged, other
}

func TestVerifyRejects(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	digest := sum("il messaggio originale")
	nonce := big.NewInt(1234567)
	tok := issueHTTP(t, a, digest, nonce, true)
	bare := issueHTTP(t, a, digest, nonce, false)
	ok := VerifyOptions{Roots: p.roots}

	other := newPKI(t, pkiOptions{})
	otherTok := stamp(t, other.authority(t, nil), digest)
	noNonce := issueHTTP(t, other.authority(t, nil), digest, nil, true)

	weak := newPKI(t, pkiOptions{nonCriticalEKU: true})
	weakTok := rawToken(t, weak.tsa, weak.tsaKey, weak.chain, digest, nil, true, time.Now())

	short := newPKI(t, pkiOptions{notAfter: time.Now().Add(time.Hour)})
	shortTok := stamp(t, short.authority(t, nil), digest)

	outside := rawToken(t, p.tsa, p.tsaKey, p.chain, digest, nil, true, p.notAfter.Add(time.Hour))

	forged, forgedDigest := retarget(t, tok, digest)
	bareForged, bareForgedDigest := retarget(t, bare, digest)

	sha1Digest := sha1.Sum([]byte("il messaggio originale"))

	tests := []struct {
		name   string
		token  []byte
		digest []byte
		opts   VerifyOptions
		want   string
	}{
		{"other data", tok, sum("altri dati"), ok, "message imprint does not match the data"},
		{"digest of wrong length", tok, sha1Digest[:], ok, "the digest is 20 bytes"},
		{"flipped signature byte", flipSignature(t, tok), digest, ok, "signature does not verify"},
		{"rewritten imprint", forged, forgedDigest, ok, "signed message digest does not match the TSTInfo"},
		{"untrusted TSA", otherTok, digest, ok, "does not chain to a trusted root"},
		{"non-critical EKU", weakTok, digest, VerifyOptions{Roots: weak.roots}, "not marked critical"},
		{"expired at verification time", shortTok, digest,
			VerifyOptions{Roots: short.roots, CurrentTime: time.Now().Add(2 * time.Hour)}, "the TSA certificate expired"},
		{"genTime outside validity", outside, digest, ok, "outside the TSA certificate's validity"},
		{"wrong nonce", tok, digest, VerifyOptions{Roots: p.roots, Nonce: big.NewInt(7654321)}, "nonce is not the one sent"},
		{"missing nonce", noNonce, digest, VerifyOptions{Roots: other.roots, Nonce: nonce}, "the token has no nonce"},
		{"no certificate embedded or given", bare, digest, ok, "embeds no certificate"},
		{"wrong TSA certificate given", bare, digest, VerifyOptions{Roots: p.roots, TSACertificate: other.tsa}, "neither embedded nor given"},
		{"no-cert token, rewritten imprint", bareForged, bareForgedDigest,
			VerifyOptions{Roots: p.roots, TSACertificate: p.tsa}, "signed message digest does not match the TSTInfo"},
		{"no-cert token, flipped signature byte", flipSignature(t, bare), digest,
			VerifyOptions{Roots: p.roots, TSACertificate: p.tsa}, "signature does not verify"},
		{"no roots", tok, digest, VerifyOptions{}, "no trusted roots"},
		{"empty", nil, digest, ok, "the token is empty"},
		{"garbage", []byte("not a token at all"), digest, ok, "not a CMS SignedData"},
		{"oversized", make([]byte, MaxTokenSize+1), digest, ok, "more than the 1048576 allowed"},
		{"truncated", tok[:len(tok)/2], digest, ok, "not a CMS SignedData"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Verify(tt.token, tt.digest, tt.opts)
			if err == nil {
				t.Fatalf("Verify succeeded (genTime %v), want error containing %q", info.GenTime, tt.want)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "tsa: verify: ") {
				t.Errorf("error %q lacks the prefix \"tsa: verify: \"", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}

	// The reason Verify exists: digitorus/timestamp.Parse checks no
	// signature when the token embeds no certificate.
	if _, err := timestamp.Parse(bareForged); err == nil {
		t.Log("digitorus/timestamp.Parse accepts the forged no-certificate token; Verify rejects it")
	}
}

// TestVerifyDefaultTime checks that a zero CurrentTime means genTime: a token
// made while the TSA certificate was valid still verifies after it expired.
func TestVerifyDefaultTime(t *testing.T) {
	now := time.Now()
	p := newPKI(t, pkiOptions{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)})
	genTime := now.Add(-36 * time.Hour).Truncate(time.Second)
	a := p.authority(t, func() time.Time { return genTime })
	// The real-time signingTime attribute that digitorus/pkcs7 adds lies
	// outside the certificate's validity here; Verify does not rely on it.
	tok := stamp(t, a, sum("archiviato"))
	info, err := Verify(tok, sum("archiviato"), VerifyOptions{Roots: p.roots})
	if err != nil {
		t.Fatalf("Verify at genTime: %v", err)
	}
	if !info.GenTime.Equal(genTime) {
		t.Errorf("GenTime = %v, want %v", info.GenTime, genTime)
	}
	if _, err := Verify(tok, sum("archiviato"), VerifyOptions{Roots: p.roots, CurrentTime: now}); err == nil {
		t.Error("Verify at now succeeded, want an expired-certificate error")
	}
}

func TestStamperRejectsBadDigest(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	stampers := map[string]Stamper{
		"authority": p.authority(t, nil),
		"client":    &Client{URL: "http://127.0.0.1:1/unused"},
	}
	for name, s := range stampers {
		for _, n := range []int{0, 20, 31, 33, 64} {
			_, err := s.Timestamp(context.Background(), make([]byte, n))
			if err == nil || !strings.Contains(err.Error(), "SHA-256") {
				t.Errorf("%s: Timestamp(%d bytes) error = %v, want a SHA-256 length error", name, n, err)
			}
		}
	}
}

func TestCertificateTemplate(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	c := p.tsa
	var ekus int
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			ekus++
			if !e.Critical {
				t.Error("EKU extension is not critical")
			}
		}
	}
	if ekus != 1 {
		t.Errorf("%d EKU extensions, want 1", ekus)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping {
		t.Errorf("ExtKeyUsage = %v, want [timeStamping]", c.ExtKeyUsage)
	}
	if c.IsCA {
		t.Error("TSA certificate is a CA")
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature", c.KeyUsage)
	}
	if err := checkTSAProfile(c); err != nil {
		t.Errorf("checkTSAProfile: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: p.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
		t.Errorf("chain: %v", err)
	}
}

func TestVerifyIntermediates(t *testing.T) {
	p := newPKI(t, pkiOptions{intermediate: true})
	digest := sum("catena")
	bare := issueHTTP(t, p.authority(t, nil), digest, nil, false)
	inter := x509.NewCertPool()
	inter.AddCert(p.inter)
	if _, err := Verify(bare, digest, VerifyOptions{Roots: p.roots, TSACertificate: p.tsa, Intermediates: inter}); err != nil {
		t.Errorf("Verify with Intermediates: %v", err)
	}
	_, err := Verify(bare, digest, VerifyOptions{Roots: p.roots, TSACertificate: p.tsa})
	if err == nil || !strings.Contains(err.Error(), "does not chain to a trusted root") {
		t.Errorf("Verify without the intermediate: error = %v, want a chain error", err)
	}
}
