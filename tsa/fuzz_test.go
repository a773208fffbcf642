package tsa

import (
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "regenerate the files in testdata")

// fuzzCorpus is the seed corpus of FuzzVerify.
const fuzzCorpus = "testdata/fuzz/FuzzVerify"

// fuzzGenTime is the genTime of the seed tokens.
var fuzzGenTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fuzzDigest is the digest the seed tokens stamp.
func fuzzDigest() []byte { return sum("custode fuzz data") }

// fuzzCerts holds the root and TSA certificates that signed the seed
// tokens, in that order, in PEM.
const fuzzCerts = "testdata/fuzz-certs.pem"

// fuzzPKIs is the root and TSA certificate of the seed tokens, read from
// fuzzCerts. Their keys are not kept: Verify needs none.
type fuzzPKIs struct {
	root, tsa *x509.Certificate
	roots     *x509.CertPool
}

func loadFuzzPKI(t testing.TB) *fuzzPKIs {
	t.Helper()
	b, err := os.ReadFile(fuzzCerts)
	if err != nil {
		t.Fatalf("%v (run go test ./tsa/ -run TestFuzzCorpus -update to regenerate)", err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", fuzzCerts, err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		t.Fatalf("%s holds %d certificates, want root and TSA", fuzzCerts, len(certs))
	}
	p := &fuzzPKIs{root: certs[0], tsa: certs[1], roots: x509.NewCertPool()}
	p.roots.AddCert(p.root)
	return p
}

// writeFuzzSeeds makes a new PKI valid from 2020 to 2100, stamps the seed
// tokens with it at fuzzGenTime, and writes certificates and corpus.
func writeFuzzSeeds(t *testing.T) {
	nb := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	na := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPKI(t, pkiOptions{notBefore: nb, notAfter: na})
	a := p.authority(t, func() time.Time { return fuzzGenTime })
	withCert := issueHTTP(t, a, fuzzDigest(), big.NewInt(0x0123456789), true)
	bare := issueHTTP(t, a, fuzzDigest(), nil, false)
	seeds := map[string][]byte{
		"valid-token":        withCert,
		"valid-token-nocert": bare,
		"truncated-token":    withCert[:len(withCert)/3],
		"flipped-signature":  flipSignature(t, withCert),
		"not-der":            []byte("not a time-stamp token"),
	}
	if err := os.MkdirAll(fuzzCorpus, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(fuzzCorpus, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var pemData []byte
	for _, c := range []*x509.Certificate{p.root, p.tsa} {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(fuzzCerts, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFuzzCorpus checks that the valid seeds of FuzzVerify still verify, so
// that fuzzing starts from tokens that reach every check. With -update it
// writes the seed corpus anew.
func TestFuzzCorpus(t *testing.T) {
	if *update {
		writeFuzzSeeds(t)
	}
	p := loadFuzzPKI(t)
	for _, name := range []string{"valid-token", "valid-token-nocert"} {
		tok := readSeed(t, filepath.Join(fuzzCorpus, name))
		info, err := Verify(tok, fuzzDigest(), VerifyOptions{Roots: p.roots, TSACertificate: p.tsa})
		if err != nil {
			t.Errorf("seed %s: Verify: %v (run go test ./tsa/ -run TestFuzzCorpus -update to regenerate)", name, err)
			continue
		}
		if !info.GenTime.Equal(fuzzGenTime) {
			t.Errorf("seed %s: GenTime = %v, want %v", name, info.GenTime, fuzzGenTime)
		}
	}
}

// readSeed decodes a corpus file holding one []byte value.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	line = strings.TrimSuffix(strings.TrimSpace(line), ")")
	s, err := strconv.Unquote(line)
	if !ok || err != nil {
		t.Fatalf("%s is not a corpus file of one []byte: %v", path, err)
	}
	return []byte(s)
}

// FuzzVerify feeds arbitrary tokens to Verify, which must never panic, must
// refuse anything over MaxTokenSize, and must only accept tokens that
// stamp the digest and name a TSA certificate chaining to the root.
func FuzzVerify(f *testing.F) {
	p := loadFuzzPKI(f)
	digest := fuzzDigest()
	f.Fuzz(func(t *testing.T, token []byte) {
		info, err := Verify(token, digest, VerifyOptions{Roots: p.roots, TSACertificate: p.tsa})
		if err != nil {
			if info != nil {
				t.Fatalf("Verify returned both Info and error %v", err)
			}
			return
		}
		if len(token) > MaxTokenSize {
			t.Fatalf("Verify accepted a %d-byte token", len(token))
		}
		if info == nil || info.Certificate == nil || len(info.Chain) == 0 {
			t.Fatalf("Verify succeeded with incomplete Info %+v", info)
		}
		if !info.Chain[len(info.Chain)-1].Equal(p.root) {
			t.Fatalf("Verify accepted a chain ending at %q", info.Chain[len(info.Chain)-1].Subject)
		}
	})
}
