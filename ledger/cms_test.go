package ledger

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
	"github.com/digitorus/pkcs7"
)

// TestCMSSignerSigningCertificateV2 checks that checkpoint signatures carry
// the ESS signing-certificate-v2 attribute (shown by openssl), and that
// VerifyDetached refuses one whose attribute names another certificate.
func TestCMSSignerSigningCertificateV2(t *testing.T) {
	ctx := context.Background()
	d := testPKI(t)
	data := []byte("pec.test.example/custode\n42\nq83...\n")
	signer := &CMSSigner{Certificate: d.Gestore.Certificate, Key: d.Gestore.Key}
	sig, err := signer.SignDetached(ctx, data)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "sig.p7s")
	if err := os.WriteFile(path, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(needTool(t, "openssl"), "cms", "-cmsout", "-print", "-inform", "DER", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -print: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "id-smime-aa-signingCertificateV2") {
		t.Fatalf("openssl cms -print does not show signingCertificateV2:\n%s", out)
	}

	// signWith signs data with the gestore's key and the attributes given.
	signWith := func(attrs ...pkcs7.Attribute) []byte {
		sd, err := pkcs7.NewSignedData(data)
		if err != nil {
			t.Fatal(err)
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
		if err := sd.AddSigner(d.Gestore.Certificate, d.Gestore.Key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
			t.Fatal(err)
		}
		sd.Detach()
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	own, err := smime.SigningCertificateV2(d.Gestore.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	ofTSA, err := smime.SigningCertificateV2(d.TSA.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	stamped, err := tsa.StampSignature(ctx, sig, testAuthority(t, nil))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		sig  []byte
		want string // "" for success
	}{
		{"CMSSigner", sig, ""},
		{"CMSSigner, CAdES-T stamped", stamped, ""},
		{"without the attribute", signWith(), ""},
		{"naming the TSA certificate", signWith(ofTSA), "names another certificate"},
		{"twice", signWith(own, own), "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyDetached(data, tt.sig, d.Roots(), nil, time.Now())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("VerifyDetached: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
