package export_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// receiptSignature returns the decoded smime.p7s of a multipart/signed
// message.
func receiptSignature(t *testing.T, msg []byte) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err != nil {
			t.Fatalf("no signature part: %v", err)
		}
		if ct := p.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-pkcs7-signature") || strings.HasPrefix(ct, "application/pkcs7-signature") {
			b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestExportSignatureTimestamps checks that, given a Stamper, the
// manifest's signature and a reproduction's carry a CAdES-T signature
// time-stamp taken at export, that the token verifies (ours and openssl ts
// over the signature value), that the signatures still verify, and that
// without a Stamper there is none.
func TestExportSignatureTimestamps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	exportTime := time.Now().Add(time.Minute).Truncate(time.Second).Add(123456789)
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{Certificate: f.dev.TSA.Certificate, Signer: f.dev.TSA.Key,
		Chain: []*x509.Certificate{f.dev.CA.Certificate}, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1},
		Now: func() time.Time { return exportTime }})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.dev.CA.Certificate)

	extract := func(st tsa.Stamper) *export.Bundle {
		b, err := export.Extract(ctx, export.ExtractOptions{Ledger: f.ledger, Mailbox: "mario@pec.alfa.test",
			From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Signer: f.signer, Stamper: st, GestoreCA: f.caPEM, TSACA: f.caPEM})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	build := func(which string, st tsa.Stamper) func() *export.Bundle {
		return func() *export.Bundle {
			b, err := export.Build(ctx, export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: f.seqs[which],
				Signer: f.signer, Stamper: st, GestoreCA: f.caPEM, TSACA: f.caPEM})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	tests := []struct {
		name         string
		make         func() *export.Bundle
		reproduction bool
		stamped      bool
	}{
		{"original", build("original", a), false, true},
		{"reproduction", build("reproduction", a), true, true},
		{"extract", func() *export.Bundle { return extract(a) }, false, true},
		{"reproduction without a Stamper", build("reproduction", nil), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.make()
			if b.Reproduction != tt.reproduction {
				t.Fatalf("Reproduction = %v", b.Reproduction)
			}
			manifest, sig := b.File(export.FileManifest), b.File(export.FileManifestSig)
			if _, err := ledger.VerifyDetached(manifest, sig, roots, nil, time.Now()); err != nil {
				t.Fatalf("manifest.p7s: %v", err)
			}
			var z bytes.Buffer
			if err := b.WriteZip(&z); err != nil {
				t.Fatal(err)
			}
			if rep := verify(t, f, z.Bytes()); !rep.OK() {
				t.Fatalf("the bundle does not verify:\n%s", failures(rep))
			}
			sigs := map[string][]byte{"manifest.p7s": sig}
			if tt.reproduction {
				receipt := b.File(export.FileReceipt)
				if _, err := smime.Verify(receipt, smime.VerifyOptions{Roots: []*x509.Certificate{f.dev.CA.Certificate}, CurrentTime: time.Now()}); err != nil {
					t.Fatalf("the reproduction does not verify: %v", err)
				}
				sigs["reproduction"] = receiptSignature(t, receipt)
			}
			for name, s := range sigs {
				info, err := tsa.VerifySignatureTimestamp(s, tsa.VerifyOptions{Roots: roots})
				if !tt.stamped {
					if !errors.Is(err, tsa.ErrNoSignatureTimestamp) {
						t.Fatalf("%s: %v, want no signature time-stamp", name, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !info.GenTime.Equal(exportTime) {
					t.Errorf("%s: time-stamped at %s, want the export's %s", name, info.GenTime, exportTime)
				}
				opensslTS(t, f, s)
			}
		})
	}
}

// opensslTS checks with openssl ts that the signature time-stamp of p7s is
// over its signature value.
func opensslTS(t *testing.T, f *fixture, p7s []byte) {
	t.Helper()
	value, err := tsa.SignatureValue(p7s)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := tsa.SignatureTimestamps(p7s)
	if err != nil || len(toks) != 1 {
		t.Fatalf("%d tokens, %v", len(toks), err)
	}
	dir := t.TempDir()
	for n, b := range map[string][]byte{"value.bin": value, "token.der": toks[0]} {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("openssl", "ts", "-verify", "-token_in", "-in", filepath.Join(dir, "token.der"),
		"-data", filepath.Join(dir, "value.bin"), "-CAfile", f.caFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl ts -verify over the signature value: %v\n%s", err, out)
	}
}
