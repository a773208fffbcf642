package pec

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
)

var update = flag.Bool("update", false, "rewrite the golden files and the FuzzParse seed corpus in testdata")

const (
	testProvider = "Custode Test PEC S.p.A."
	testDomain   = "pec.custode.test"
)

// devPKI is made once per test binary: RSA key generation is slow.
var devPKI = sync.OnceValues(func() (*pki.DevSet, error) {
	return pki.NewDevSet(testProvider, testDomain, time.Now())
})

func mustPKI(tb testing.TB) *pki.DevSet {
	tb.Helper()
	s, err := devPKI()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// seqIDs returns a deterministic IDSource: the riferimento temporale and a
// counter, for golden files. Each call makes an independent counter.
func seqIDs() IDSource {
	var mu sync.Mutex
	n := 0
	return IDFunc(func(at time.Time) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("%s.test%04d", at.UTC().Format("20060102150405"), n), nil
	})
}

// newGestore returns the test gestore with a fresh deterministic IDSource.
func newGestore(tb testing.TB) *Gestore {
	tb.Helper()
	s := mustPKI(tb)
	g, err := NewGestore(testProvider, testDomain, &smime.Signer{Key: s.Gestore.Key, Certificate: s.Gestore.Certificate, Chain: s.Gestore.Chain}, seqIDs())
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// caPEM returns the dev CA in PEM form.
func caPEM(tb testing.TB) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mustPKI(tb).CA.Certificate.Raw})
}

// devRoots returns the dev CA as trusted roots.
func devRoots(tb testing.TB) []*x509.Certificate {
	return []*x509.Certificate{mustPKI(tb).CA.Certificate}
}

// The riferimenti temporali of the test transactions: one in winter time
// (+0100) and one in summer time (+0200).
var (
	acceptedAt  = time.Date(2025, 11, 14, 17, 26, 32, 0, time.UTC)
	deliveredAt = time.Date(2025, 11, 14, 17, 26, 35, 0, time.UTC)
	summerAt    = time.Date(2025, 7, 3, 8, 5, 9, 0, time.UTC)
)

// testOriginal is the user's message of the test transactions: a text, a
// PDF attachment, an attached message, an RFC 2047 subject.
const testOriginal = "Received: from [192.0.2.10] (client.example [192.0.2.10])\r\n" +
	"\tby smtp.pec.custode.test (Custode) with ESMTPSA\r\n" +
	"\tfor <anna.bianchi@pec.altro.test>; Fri, 14 Nov 2025 18:26:30 +0100\r\n" +
	"From: Mario Rossi <mario.rossi@pec.custode.test>\r\n" +
	"To: Anna Bianchi <anna.bianchi@pec.altro.test>, ufficio@example.com\r\n" +
	"Cc: legale@pec.altro.test\r\n" +
	"Subject: =?utf-8?q?Contratto_di_fornitura_n=2E_42_=E2=80=94_firma?=\r\n" +
	"Date: Fri, 14 Nov 2025 18:26:28 +0100\r\n" +
	"Message-ID: <20251114182628.1234@client.example>\r\n" +
	"X-TipoRicevuta: completa\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n" +
	"\r\n" +
	"This is a multi-part message in MIME format.\r\n" +
	"--=_b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Buongiorno, in allegato il contratto firmato. Perché no?\r\n" +
	"Cordiali saluti, Mario Rossi\r\n" +
	"--=_b1\r\n" +
	"Content-Type: application/pdf; name=\"contratto.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"contratto.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcTl8uXrp/Og0MTGCjEgMCBvYmoKPDwgL1R5cGUgL0NhdGFsb2cgPj4KZW5kb2Jq\r\n" +
	"CnRyYWlsZXIKPDwgL1Jvb3QgMSAwIFIgPj4KJSVFT0YK\r\n" +
	"--=_b1\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: ufficio@example.com\r\n" +
	"Subject: bozza\r\n" +
	"\r\n" +
	"Bozza del contratto.\r\n" +
	"--=_b1--\r\n"

// testEnvelope is the SMTP envelope of the test transactions.
var testEnvelope = Envelope{
	Mittente: "mario.rossi@pec.custode.test",
	Destinatari: []daticert.Destinatario{
		{Address: "anna.bianchi@pec.altro.test", Tipo: daticert.DestinatarioCertificato},
		{Address: "ufficio@example.com", Tipo: daticert.DestinatarioEsterno},
		{Address: "legale@pec.altro.test", Tipo: daticert.DestinatarioCertificato},
	},
}

// newTransaction starts the test transaction at the punto di accesso.
func newTransaction(tb testing.TB, g *Gestore) *Transaction {
	tb.Helper()
	tx, err := g.NewTransaction([]byte(testOriginal), testEnvelope, acceptedAt)
	if err != nil {
		tb.Fatal(err)
	}
	return tx
}

// moduleRoot returns the directory holding go.mod, walking up from the
// package directory.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// readSample reads a real signed PEC message from ../shared/pec-samples
// beside the module root; its absence fails the test.
func readSample(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(tb), "..", "shared", "pec-samples", name))
	if err != nil {
		tb.Fatalf("reading PEC sample: %v (the samples live in shared/pec-samples beside the module root)", err)
	}
	return b
}

// systemRoots returns Debian's CA bundle, which holds the root the 2014
// samples chain to (Baltimore CyberTrust Root).
func systemRoots(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		tb.Fatalf("%v: install Debian's ca-certificates package (the project test script does)", err)
	}
	roots, err := smime.ParseCertificatesPEM(b)
	if err != nil {
		tb.Fatal(err)
	}
	return roots
}

// tool returns the path of an external command the tests need; its
// absence fails the test.
func tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/bin/" + name; fileExists(p) {
		return p
	}
	tb.Fatalf("%s not found: run the project test script, which installs it (apt-get install %s)", name, pkg)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// opensslVerify runs openssl smime -verify on msg trusting the dev CA.
func opensslVerify(tb testing.TB, msg []byte) error {
	tb.Helper()
	dir := tb.TempDir()
	in, ca := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM(tb), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(tool(tb, "openssl", "openssl"), "smime", "-verify", "-in", in, "-CAfile", ca, "-purpose", "any", "-out", filepath.Join(dir, "content"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("openssl smime -verify: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if !strings.Contains(stderr.String(), "Verification successful") {
		return fmt.Errorf("openssl smime -verify: %s", stderr.String())
	}
	return nil
}

// xmllintValidate validates a daticert.xml against the DTD of RFC 6109
// §4.4 kept by pec/daticert.
func xmllintValidate(tb testing.TB, xml []byte) error {
	tb.Helper()
	dtd := filepath.Join(moduleRoot(tb), "pec", "daticert", "testdata", "daticert.dtd")
	f := filepath.Join(tb.TempDir(), "daticert.xml")
	if err := os.WriteFile(f, xml, 0o600); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(tool(tb, "xmllint", "libxml2-utils"), "--noout", "--dtdvalid", dtd, f).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xmllint --dtdvalid: %v: %s", err, out)
	}
	return nil
}
