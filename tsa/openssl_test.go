package tsa

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// opensslPath returns the openssl binary or fails the test: the
// interoperability check must not be skipped silently.
func opensslPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("openssl"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/openssl"); err == nil {
		return "/usr/bin/openssl"
	}
	t.Fatal("openssl not found (looked in PATH and /usr/bin/openssl): run the project test script, .ci/run, which installs it")
	return ""
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSSLVerify checks that `openssl ts -verify` accepts our tokens,
// and refuses what it should, so that anyone can check an archived token
// with stock tools.
func TestOpenSSLVerify(t *testing.T) {
	openssl := opensslPath(t)
	data := []byte("Messaggio PEC di prova\r\n")
	digest := sha256.Sum256(data)

	tests := []struct {
		name      string
		pki       pkiOptions
		certReq   bool
		untrusted bool // pass the TSA certificate (and chain) with -untrusted
		otherData bool
		queryFile bool          // check against the request (imprint and nonce) instead of the data
		raw       bool          // sign with digitorus directly, bypassing NewAuthority
		frac      time.Duration // the Authority's clock is a whole second plus frac
		wantOK    bool
	}{
		{name: "ecdsa", certReq: true, wantOK: true},
		{name: "rsa", pki: pkiOptions{key: "rsa"}, certReq: true, wantOK: true},
		{name: "intermediate", pki: pkiOptions{intermediate: true}, certReq: true, wantOK: true},
		{name: "no certificate with -untrusted", certReq: false, untrusted: true, wantOK: true},
		{name: "no certificate and intermediate with -untrusted", pki: pkiOptions{intermediate: true}, certReq: false, untrusted: true, wantOK: true},
		{name: "request file", certReq: true, queryFile: true, wantOK: true},
		{name: "request file, genTime to the nanosecond", certReq: true, queryFile: true, frac: 123456789, wantOK: true},
		{name: "data, genTime to the millisecond", pki: pkiOptions{key: "rsa"}, certReq: true, frac: 250 * time.Millisecond, wantOK: true},
		{name: "other data", certReq: true, otherData: true, wantOK: false},
		{name: "non-critical EKU", pki: pkiOptions{nonCriticalEKU: true}, certReq: true, raw: true, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t, tt.pki)
			var tok []byte
			req := timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest[:], Nonce: big.NewInt(5), Certificates: tt.certReq}
			query, err := req.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if tt.raw {
				tok = rawToken(t, p.tsa, p.tsaKey, p.chain, digest[:], req.Nonce, tt.certReq, time.Now())
			} else {
				at := time.Now().Truncate(time.Second).Add(tt.frac)
				rec := postQuery(p.authority(t, func() time.Time { return at }), query)
				tok = tokenOf(t, rec.Body.Bytes())
			}
			dir := t.TempDir()
			dataPath := filepath.Join(dir, "data.bin")
			content := data
			if tt.otherData {
				content = []byte("altri dati")
			}
			if err := os.WriteFile(dataPath, content, 0o600); err != nil {
				t.Fatal(err)
			}
			tokPath := filepath.Join(dir, "token.der")
			if err := os.WriteFile(tokPath, tok, 0o600); err != nil {
				t.Fatal(err)
			}
			caPath := filepath.Join(dir, "ca.pem")
			writePEM(t, caPath, p.root)
			args := []string{"ts", "-verify", "-token_in", "-in", tokPath, "-data", dataPath, "-CAfile", caPath}
			if tt.queryFile {
				queryPath := filepath.Join(dir, "req.tsq")
				if err := os.WriteFile(queryPath, query, 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"ts", "-verify", "-token_in", "-in", tokPath, "-queryfile", queryPath, "-CAfile", caPath}
			}
			if tt.untrusted {
				tsaPath := filepath.Join(dir, "tsa.pem")
				writePEM(t, tsaPath, append([]*x509.Certificate{p.tsa}, p.chain[:len(p.chain)-1]...)...)
				args = append(args, "-untrusted", tsaPath)
			}
			out, err := exec.Command(openssl, args...).CombinedOutput()
			got := strings.TrimSpace(string(out))
			switch {
			case tt.wantOK && (err != nil || !strings.Contains(got, "Verification: OK")):
				t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, got)
			case !tt.wantOK && err == nil:
				t.Fatalf("openssl accepted the token, want a refusal:\n%s", got)
			}
			t.Logf("openssl: %s", got)
			if tt.frac != 0 {
				// openssl prints genTime with its fraction: the token
				// keeps it and openssl reads it.
				out, err := exec.Command(openssl, "ts", "-reply", "-token_in", "-in", tokPath, "-text").CombinedOutput()
				if err != nil {
					t.Fatalf("openssl ts -reply -text: %v\n%s", err, out)
				}
				frac := strings.TrimRight(fmt.Sprintf("%09d", tt.frac.Nanoseconds()), "0")
				if !strings.Contains(string(out), "."+frac+" ") && !strings.Contains(string(out), "."+frac+"Z") {
					t.Fatalf("openssl does not show the fraction .%s of genTime:\n%s", frac, out)
				}
			}
		})
	}
}
