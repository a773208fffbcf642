package imapserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/custode/custode/pec/mailstore"
)

// testPKI is a CA and a server certificate for 127.0.0.1 it signed.
type testPKI struct {
	caFile string
	server tls.Certificate
	roots  *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "custode imapserver test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &testPKI{
		caFile: caFile,
		server: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
		roots:  roots,
	}
}

// testEnv is a store with two mailboxes served on 127.0.0.1.
type testEnv struct {
	store *mailstore.Store
	srv   *Server
	addr  string
	pki   *testPKI
	serve chan error
}

const (
	mario   = "mario.rossi@pec.example.it"
	marioPW = "Password-di-Mario-1"
	anna    = "anna.bianchi@pec.example.it"
	annaPW  = "Password-di-Anna-2"
)

func newEnv(t *testing.T, configure func(*Options)) *testEnv {
	t.Helper()
	ctx := context.Background()
	logw := newTestWriter(t) // first cleanup registered, so the last run
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := mailstore.Open(ctx, mailstore.Options{Dir: t.TempDir(), PasswordIterations: 1000, MaxFailures: 3, LoginDelay: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, a := range []struct{ addr, pw string }{{mario, marioPW}, {anna, annaPW}} {
		if err := store.AddMailbox(ctx, a.addr, a.pw, 0); err != nil {
			t.Fatal(err)
		}
	}
	pki := newPKI(t)
	opts := Options{
		Store:     store,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12},
		Logger:    log,
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{store: store, srv: srv, addr: ln.Addr().String(), pki: pki, serve: make(chan error, 1)}
	go func() { e.serve <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-e.serve:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return e
}

// testWriter sends logs to t.Log until the test ends, and checks that no
// password is logged.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	for _, pw := range []string{marioPW, annaPW, "wrong-password"} {
		if strings.Contains(string(p), pw) {
			w.t.Errorf("a password reached the log: %s", p)
		}
	}
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *testEnv) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: e.pki.roots, ServerName: "127.0.0.1"}
}

// dial connects with STARTTLS.
func (e *testEnv) dial(t *testing.T, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = e.clientTLS()
	c, err := imapclient.DialStartTLS(e.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login connects with STARTTLS and logs in.
func (e *testEnv) login(t *testing.T, user, pw string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c := e.dial(t, opts)
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func (e *testEnv) deliver(t *testing.T, addr string, msg []byte) mailstore.Delivered {
	t.Helper()
	d, err := e.store.Deliver(context.Background(), mailstore.Delivery{Address: addr, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pecMessage is a message shaped like a PEC busta: multipart/signed around
// a multipart/mixed with text, daticert.xml and the original message.
func pecMessage(subject string) []byte {
	return []byte("Return-Path: <posta-certificata@pec.example.it>\r\n" +
		"Received: from mx.pec.example.it by pec.example.it; Mon, 23 Nov 2026 10:00:00 +0100\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n" +
		"From: \"Per conto di: luca@pec.example.it\" <posta-certificata@pec.example.it>\r\n" +
		"To: " + mario + "\r\n" +
		"Subject: POSTA CERTIFICATA: " + subject + "\r\n" +
		"Message-ID: <opec.20261123.1@pec.example.it>\r\n" +
		"X-Trasporto: posta-certificata\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"S\"\r\n" +
		"\r\n" +
		"--S\r\n" +
		"Content-Type: multipart/mixed; boundary=\"M\"\r\n" +
		"\r\n" +
		"--M\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"Messaggio di posta certificata: il giorno 23/11/2026 alle ore 10:00 =C3=A8 stato inviato.\r\n" +
		"--M\r\n" +
		"Content-Type: application/xml; name=\"daticert.xml\"\r\n" +
		"Content-Disposition: inline; filename=\"daticert.xml\"\r\n" +
		"\r\n" +
		"<postacert tipo=\"posta-certificata\"/>\r\n" +
		"--M\r\n" +
		"Content-Type: message/rfc822; name=\"postacert.eml\"\r\n" +
		"\r\n" +
		"From: luca@pec.example.it\r\n" +
		"To: " + mario + "\r\n" +
		"Subject: " + subject + "\r\n" +
		"\r\n" +
		"Testo originale con parola chiave zibaldone.\r\n" +
		"--M--\r\n" +
		"\r\n" +
		"--S\r\n" +
		"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAA==\r\n" +
		"--S--\r\n")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed bound
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
