package httpapi_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/pki"
)

// tlsServer serves the API over HTTPS with Serve, client certificates
// verified against the fixture's CA.
func (f *fixture) tlsServer(t *testing.T) string {
	t.Helper()
	srvKP, err := pki.IssueTLSServer(f.dev.CA, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := srvKP.WriteFiles(filepath.Join(f.dir, "api.pem"), filepath.Join(f.dir, "api.key")); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(f.dir, "api.pem"), filepath.Join(f.dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	opts := f.opts
	opts.TLS = httpapi.TLSConfig(cert, f.dev.Roots())
	s, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

// clientCert issues a client certificate from ca with a subject CN and
// email addresses, and writes it and its key to dir.
func clientCert(t *testing.T, ca *pki.KeyPair, cn string, emails []string, dir, name string) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn, Organization: []string{"Studio"}}, EmailAddresses: emails,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kp := &pki.KeyPair{Certificate: c, Key: key}
	certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := kp.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func httpsClient(f *fixture, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: f.dev.Roots(), Certificates: certs}}}
}

// TestMTLS: a client certificate from the configured CA names the user
// by its CN, or its email without one; one from another CA is refused by
// the TLS layer.
func TestMTLS(t *testing.T) {
	f := newFixture(t)
	base := f.tlsServer(t)
	op := clientCert(t, f.dev.CA, "mtls-operator", nil, f.dir, "op")
	aud := clientCert(t, f.dev.CA, "", []string{"revisore@studio.test"}, f.dir, "aud")
	stranger := clientCert(t, f.dev.CA, "sconosciuto", nil, f.dir, "stranger")
	other, err := pki.NewDevSet("Altro", "pec.altro.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := clientCert(t, other.CA, "mtls-operator", nil, f.dir, "forged")
	period := "from=" + url.QueryEscape(since(f))

	cases := []struct {
		name   string
		certs  []tls.Certificate
		path   string
		status int
		actor  string
	}{
		{"operator by CN", []tls.Certificate{op}, "/v1/entries?kind=accettazione", 200, "operator:mtls-operator"},
		{"auditor by email", []tls.Certificate{aud}, "/v1/audit?" + period, 200, "auditor:revisore@studio.test"},
		{"no role", []tls.Certificate{stranger}, "/v1/checkpoints/latest", 403, "user:sconosciuto"},
		{"no certificate", nil, "/v1/checkpoints/latest", 401, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := get(t, httpsClient(f, c.certs...), base+c.path, nobody)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, c.status, body)
			}
			if c.actor != "" && !strings.Contains(lastRecord(t, f), `"actor":"`+c.actor+`"`) {
				t.Errorf("last record is not by %s: %s", c.actor, lastRecord(t, f))
			}
		})
	}
	t.Run("certificate of another CA", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/checkpoints/latest", nil)
		c := httpsClient(f)
		// Sent even though the server does not list its CA.
		c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forged, nil }
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a certificate of another CA got status %d", resp.StatusCode)
		}
	})
	t.Run("titolare over TLS", func(t *testing.T) {
		// anna's own accettazione; bruno's to her is not hers.
		resp, body := get(t, httpsClient(f), base+"/v1/entries?kind=accettazione", f.titolareA())
		if resp.StatusCode != 200 || len(decodePage(t, body).Entries) != 1 {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
}

func entriesAre(t *testing.T, n int) func([]byte) bool {
	return func(b []byte) bool { return len(decodePage(t, b).Entries) == n }
}

func lastRecord(t *testing.T, f *fixture) string {
	t.Helper()
	// The last entry that is not a checkpoint's, which the checkpointer
	// appends on its own.
	for seq := f.ledger.Head().Size; seq > 0; seq-- {
		e, raw, err := f.ledger.Entry(context.Background(), seq-1)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != ledger.KindCheckpoint {
			return string(raw)
		}
	}
	return ""
}

// TestCurl runs real curl against the HTTPS server: Basic, bearer and
// client certificate.
func TestCurl(t *testing.T) {
	t.Parallel() // its own fixture and server
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (scripts/install-test-deps.sh installs it)")
	}
	f := newFixture(t)
	base := f.tlsServer(t)
	clientCert(t, f.dev.CA, "mtls-operator", nil, f.dir, "op")
	ca := filepath.Join(f.dir, "pki", pki.CACertFile)
	tokenFile := filepath.Join(f.dir, "auth-header")
	if err := os.WriteFile(tokenFile, []byte("Authorization: Bearer "+f.tokens["aldo"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		path  string
		want  int
		check func(body []byte) bool
	}{
		{"basic", []string{"-u", mailA + ":" + passA}, "/v1/entries?kind=accettazione", 200, entriesAre(t, 1)}, // anna's own; bruno's accettazione to her is not hers
		{"basic, another's log", []string{"-u", mailA + ":" + passA}, "/v1/entries?mailbox=" + url.QueryEscape(mailB), 403, nil},
		{"bearer", []string{"-H", "@" + tokenFile}, "/v1/checkpoints/latest?reason=curl", 200, func(b []byte) bool { return strings.Contains(string(b), `"origin":"pec.alfa.test/custode"`) }},
		{"client certificate", []string{"--cert", filepath.Join(f.dir, "op.pem"), "--key", filepath.Join(f.dir, "op.key")}, "/v1/entries?kind=posta-certificata", 200, entriesAre(t, 2)},
		{"nothing", nil, "/v1/entries?kind=accettazione", 401, nil},
		{"openapi", nil, "/openapi.json", 200, func(b []byte) bool { return json.Valid(b) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "body")
			args := append([]string{"-sS", "--cacert", ca, "-o", out, "-w", "%{http_code}"}, c.args...)
			cmd := exec.Command(curl, append(args, base+c.path)...)
			code, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, code)
			}
			body, _ := os.ReadFile(out)
			if string(code) != strconv.Itoa(c.want) {
				t.Fatalf("status %s, want %d: %.300s", code, c.want, body)
			}
			if c.check != nil && !c.check(body) {
				t.Errorf("body: %.500s", body)
			}
		})
	}
}
