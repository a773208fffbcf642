package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/smime"
	"github.com/digitorus/pkcs7"
)

// cmsSigner is a gestore-like signer issued by a test PKI's root.
type cmsSigner struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCMSSigner(t testing.TB, p *testPKI, kind string) *cmsSigner {
	t.Helper()
	key := newKey(t, kind)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(now.UnixNano()),
		Subject:        pkix.Name{Organization: []string{"Custode test"}, CommonName: "Gestore di prova"},
		EmailAddresses: []string{"posta-certificata@gestore.example"},
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	return &cmsSigner{cert: mustCert(t, tmpl, p.root, key.Public(), p.rootKey), key: key}
}

// sign makes a detached CMS SignedData over data as ledger.CMSSigner does:
// SHA-256, the certificate embedded, signing-certificate-v2.
func (s *cmsSigner) sign(t testing.TB, data []byte) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	ess, err := smime.SigningCertificateV2(s.cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{ess}}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustStamp(t testing.TB, p7s []byte, s Stamper) []byte {
	t.Helper()
	out, err := StampSignature(context.Background(), p7s, s)
	if err != nil {
		t.Fatalf("StampSignature: %v", err)
	}
	return out
}

// withSignature returns p7s with its signature value replaced.
func withSignature(t testing.TB, p7s []byte, f func([]byte) []byte) []byte {
	t.Helper()
	p, err := parseSignerInfo(p7s)
	if err != nil {
		t.Fatal(err)
	}
	sig := f(bytes.Clone(p.signature))
	head := bytes.TrimSuffix(p.siHead, mustTLV(t, p.signature))
	p.siHead = append(bytes.Clone(head), mustTLV(t, sig)...)
	out, err := p.encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustTLV encodes b as an OCTET STRING.
func mustTLV(t testing.TB, b []byte) []byte {
	t.Helper()
	der, err := (&signerInfoParts{}).octets(b)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestStampSignatureKeepsBytes(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	for _, kind := range []string{"ecdsa", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			data := []byte("manifest.sha256\n")
			orig := newCMSSigner(t, p, kind).sign(t, data)
			stamped := mustStamp(t, orig, a)
			parts, err := parseSignerInfo(stamped)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts.unsigned) != 1 {
				t.Fatalf("%d unsigned attributes, want 1", len(parts.unsigned))
			}
			parts.unsigned = nil
			back, err := parts.encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, orig) {
				t.Fatal("the stamped signature without its token is not the original byte for byte")
			}
			p7, err := pkcs7.Parse(stamped)
			if err != nil {
				t.Fatal(err)
			}
			p7.Content = data
			if err := p7.Verify(); err != nil {
				t.Fatalf("the stamped signature no longer verifies: %v", err)
			}
		})
	}
}

func TestVerifySignatureTimestamp(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	at := time.Now().Truncate(time.Second).Add(-10*time.Minute + 123456789)
	a := p.authority(t, func() time.Time { return at })
	later := p.authority(t, func() time.Time { return at.Add(time.Minute) })
	signer := newCMSSigner(t, p, "ecdsa")
	orig := signer.sign(t, []byte("manifest"))
	stamped := mustStamp(t, orig, a)
	otherStamped := mustStamp(t, signer.sign(t, []byte("un altro manifest")), a)
	otherTok, err := SignatureTimestamps(otherStamped)
	if err != nil || len(otherTok) != 1 {
		t.Fatalf("SignatureTimestamps: %d tokens, %v", len(otherTok), err)
	}
	// Another signature's token moved onto ours.
	transplanted := func() []byte {
		pp, err := parseSignerInfo(otherStamped)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := parseSignerInfo(orig)
		if err != nil {
			t.Fatal(err)
		}
		mine.unsigned = pp.unsigned
		out, err := mine.encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()
	untrusted := newPKI(t, pkiOptions{})
	ok := VerifyOptions{Roots: p.roots}

	tests := []struct {
		name     string
		p7s      []byte
		opts     VerifyOptions
		wantTime time.Time
		wantErr  string
		wantIs   error
	}{
		{name: "stamped", p7s: stamped, opts: ok, wantTime: at},
		{name: "stamped twice: the earlier token", p7s: mustStamp(t, stamped, later), opts: ok, wantTime: at},
		{name: "stamped twice, later first", p7s: mustStamp(t, mustStamp(t, orig, later), a), opts: ok, wantTime: at},
		{name: "no token", p7s: orig, opts: ok, wantIs: ErrNoSignatureTimestamp},
		{name: "tampered signature value", p7s: withSignature(t, stamped, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
			opts: ok, wantErr: "message imprint does not match"},
		{name: "token of another signature", p7s: transplanted, opts: ok, wantErr: "message imprint does not match"},
		{name: "untrusted TSA", p7s: stamped, opts: VerifyOptions{Roots: untrusted.roots}, wantErr: "does not chain to a trusted root"},
		{name: "no roots", p7s: stamped, opts: VerifyOptions{}, wantErr: "no trusted roots"},
		{name: "truncated", p7s: stamped[:len(stamped)-5], opts: ok, wantErr: "not DER"},
		{name: "trailing data", p7s: append(bytes.Clone(stamped), 0), opts: ok, wantErr: "followed by 1 bytes"},
		{name: "empty", p7s: nil, opts: ok, wantErr: "not DER"},
		{name: "a token: a signature without time-stamp", p7s: otherTok[0], opts: ok, wantIs: ErrNoSignatureTimestamp},
		{name: "a certificate", p7s: p.root.Raw, opts: ok, wantErr: "the ContentInfo has 3 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := VerifySignatureTimestamp(tt.p7s, tt.opts)
			switch {
			case tt.wantIs != nil:
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %v, want %v", err, tt.wantIs)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("VerifySignatureTimestamp: %v", err)
			case !info.GenTime.Equal(tt.wantTime):
				t.Fatalf("genTime %s, want %s", info.GenTime.Format(time.RFC3339Nano), tt.wantTime.UTC().Format(time.RFC3339Nano))
			}
		})
	}
}

func TestStampSignatureRejects(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	sig := newCMSSigner(t, p, "ecdsa").sign(t, []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		p7s  []byte
		s    Stamper
		want string
	}{
		{"no stamper", context.Background(), sig, nil, "no Stamper"},
		{"not a signature", context.Background(), []byte("ciao"), a, "not DER"},
		{"too large", context.Background(), make([]byte, MaxStampedSignatureSize+1), a, "more than"},
		{"canceled", ctx, sig, a, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := StampSignature(tt.ctx, tt.p7s, tt.s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestCAdESOpenSSL checks with stock OpenSSL that a stamped signature still
// verifies, shows its signing-certificate-v2 and signature time-stamp
// attributes, and that the token time-stamps the signature value.
func TestCAdESOpenSSL(t *testing.T) {
	openssl := opensslPath(t)
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	data := []byte("3f1c...  entry.json\n")
	for _, tt := range []struct {
		name    string
		key     string
		tamper  bool // give openssl ts another signature value
		otherTo bool // verify the CMS signature over other data
	}{
		{name: "ecdsa", key: "ecdsa"},
		{name: "rsa", key: "rsa"},
		{name: "tampered signature value", key: "ecdsa", tamper: true},
		{name: "other data", key: "rsa", otherTo: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stamped := mustStamp(t, newCMSSigner(t, p, tt.key).sign(t, data), a)
			value, err := SignatureValue(stamped)
			if err != nil {
				t.Fatal(err)
			}
			toks, err := SignatureTimestamps(stamped)
			if err != nil || len(toks) != 1 {
				t.Fatalf("SignatureTimestamps: %d, %v", len(toks), err)
			}
			if tt.tamper {
				value = bytes.Clone(value)
				value[len(value)/2] ^= 0x40
			}
			dir := t.TempDir()
			files := map[string][]byte{"sig.p7s": stamped, "value.bin": value, "token.der": toks[0], "data.bin": data}
			if tt.otherTo {
				files["data.bin"] = []byte("altri dati")
			}
			for n, b := range files {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			writePEM(t, filepath.Join(dir, "root.pem"), p.root)
			run := func(args ...string) (string, error) {
				cmd := exec.Command(openssl, args...)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				return string(out), err
			}

			out, err := run("cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.p7s")
			if err != nil {
				t.Fatalf("openssl cms -print: %v\n%s", err, out)
			}
			for _, want := range []string{"id-smime-aa-signingCertificateV2", "id-smime-aa-timeStampToken"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl cms -print does not show %s:\n%s", want, out)
				}
			}

			out, err = run("cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.p7s", "-content", "data.bin",
				"-CAfile", "root.pem", "-no-CApath", "-no-CAstore", "-out", os.DevNull)
			if tt.otherTo {
				if err == nil {
					t.Fatalf("openssl cms -verify accepted the signature over other data:\n%s", out)
				}
			} else if err != nil {
				t.Fatalf("openssl cms -verify: %v\n%s", err, out)
			}

			// openssl ts has no -no-CAstore: the TSA's root is in no
			// default store anyway.
			out, err = run("ts", "-verify", "-token_in", "-in", "token.der", "-data", "value.bin", "-CAfile", "root.pem")
			ok := err == nil && strings.Contains(out, "Verification: OK")
			if ok == tt.tamper {
				t.Fatalf("openssl ts -verify over the signature value: ok %v, want %v (%v)\n%s", ok, !tt.tamper, err, out)
			}
		})
	}
}

// FuzzSignatureTimestamp checks that no input makes the CAdES-T parser
// panic, and that whatever it takes apart it puts together again byte for
// byte.
func FuzzSignatureTimestamp(f *testing.F) {
	p := newPKI(f, pkiOptions{})
	a := p.authority(f, nil)
	orig := newCMSSigner(f, p, "ecdsa").sign(f, []byte("x"))
	f.Add(orig)
	f.Add(mustStamp(f, orig, a))
	f.Add(mustStamp(f, mustStamp(f, orig, a), a))
	opts := VerifyOptions{Roots: p.roots}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = VerifySignatureTimestamp(b, opts)
		_, _ = SignatureTimestamps(b)
		parts, err := parseSignerInfo(b)
		if err != nil {
			return
		}
		again, err := parts.encode()
		if err != nil {
			t.Fatalf("encode after parse: %v", err)
		}
		// The unsigned attributes come back in DER order, so compare
		// after a second round, which must be stable.
		parts2, err := parseSignerInfo(again)
		if err != nil {
			t.Fatalf("the re-encoded signature does not parse: %v", err)
		}
		again2, err := parts2.encode()
		if err != nil || !bytes.Equal(again, again2) {
			t.Fatalf("re-encoding is not stable: %v", err)
		}
	})
}
