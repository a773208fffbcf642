package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA hierarchy for tests: a root, an intermediate and a
// gestore signing certificate profiled as RFC 6109 §5.5 asks.
type testPKI struct {
	root     *x509.Certificate
	inter    *x509.Certificate
	interKey crypto.Signer
	signer   *Signer
	domain   string
}

// address is the gestore's signing mailbox.
func (p *testPKI) address() string { return "posta-certificata@" + p.domain }

// rootPEM returns the root certificate in PEM form.
func (p *testPKI) rootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
}

// opts returns VerifyOptions trusting the PKI's root at time at.
func (p *testPKI) opts(at time.Time) VerifyOptions {
	return VerifyOptions{Roots: []*x509.Certificate{p.root}, CurrentTime: at}
}

// The PKIs are built once per test binary: RSA key generation is slow.
var (
	rsaPKI = sync.OnceValues(func() (*testPKI, error) {
		return newTestPKI("pec.custode.test", func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }, nil)
	})
	// ecdsaPKI is an unrelated hierarchy with ECDSA keys whose signing
	// certificate lists the e-mail protection extended key usage.
	ecdsaPKI = sync.OnceValues(func() (*testPKI, error) {
		return newTestPKI("pec.custode.test", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
			[]x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection})
	})
)

func mustPKI(tb testing.TB, f func() (*testPKI, error)) *testPKI {
	tb.Helper()
	p, err := f()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func newTestPKI(domain string, newKey func() (crypto.Signer, error), leafEKU []x509.ExtKeyUsage) (*testPKI, error) {
	now := time.Now()
	rootKey, err := newKey()
	if err != nil {
		return nil, err
	}
	interKey, err := newKey()
	if err != nil {
		return nil, err
	}
	leafKey, err := newKey()
	if err != nil {
		return nil, err
	}
	root, err := issue(&x509.Certificate{
		Subject:               pkix.Name{Country: []string{"IT"}, Organization: []string{"Custode Test"}, CommonName: "Custode Test Root CA"},
		NotBefore:             now.Add(-48 * time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, rootKey, nil, rootKey)
	if err != nil {
		return nil, err
	}
	inter, err := issue(&x509.Certificate{
		Subject:                 pkix.Name{Country: []string{"IT"}, Organization: []string{"Custode Test"}, CommonName: "Custode Test PEC CA1"},
		NotBefore:               now.Add(-24 * time.Hour),
		NotAfter:                now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                    true,
		BasicConstraintsValid:   true,
		MaxPathLenZero:          true,
		KeyUsage:                x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedEmailAddresses: []string{domain},
	}, interKey, root, rootKey)
	if err != nil {
		return nil, err
	}
	// RFC 6109 §5.5: provider name in the subject, the mailbox in an
	// rfc822Name subjectAltName, critical digitalSignature key usage, no
	// basic constraints, key identifiers.
	leaf, err := issue(&x509.Certificate{
		Subject:           pkix.Name{Country: []string{"IT"}, Organization: []string{"Custode Test PEC S.p.A."}, CommonName: "Posta Certificata"},
		NotBefore:         now.Add(-time.Hour),
		NotAfter:          now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:          x509.KeyUsageDigitalSignature,
		ExtKeyUsage:       leafEKU,
		EmailAddresses:    []string{"posta-certificata@" + domain},
		PolicyIdentifiers: []asn1.ObjectIdentifier{{1, 3, 76, 16, 3, 1, 1}},
	}, leafKey, inter, interKey)
	if err != nil {
		return nil, err
	}
	if leaf.BasicConstraintsValid || len(leaf.SubjectKeyId) == 0 || len(leaf.AuthorityKeyId) == 0 {
		return nil, fmt.Errorf("test leaf does not follow the RFC 6109 profile")
	}
	return &testPKI{
		root:     root,
		inter:    inter,
		interKey: interKey,
		signer:   &Signer{Key: leafKey, Certificate: leaf, Chain: []*x509.Certificate{inter}},
		domain:   domain,
	}, nil
}

var serial = sync.OnceValue(func() *big.Int { return big.NewInt(time.Now().UnixNano()) })

// issue signs template with parentKey (self-signed when parent is nil),
// giving it a subject key identifier.
func issue(template *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	var info struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, err
	}
	ski := sha1.Sum(info.PublicKey.Bytes)
	template.SubjectKeyId = ski[:]
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	template.SerialNumber = n.Add(n, serial())
	if parent == nil {
		parent = template
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
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

// sampleFiles are the real signed PEC messages in shared/pec-samples.
var sampleFiles = []string{
	"01_aruba_2014_busta-trasporto_completa.eml",
	"02_aruba_2014_ricevuta-accettazione.eml",
	"03_aruba_2014_ricevuta-avvenuta-consegna_completa.eml",
}

// readSample reads a real PEC message from ../shared/pec-samples beside the
// module root. Its absence fails the test: the samples are part of the
// test setup.
func readSample(tb testing.TB, name string) []byte {
	tb.Helper()
	path := filepath.Join(moduleRoot(tb), "..", "shared", "pec-samples", name)
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading PEC sample: %v (the samples live in shared/pec-samples beside the module root)", err)
	}
	return b
}

// systemRootsFile is Debian's CA bundle, which holds the root the 2014
// samples chain to.
const systemRootsFile = "/etc/ssl/certs/ca-certificates.crt"

func systemRoots(tb testing.TB) []*x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(systemRootsFile)
	if err != nil {
		tb.Fatalf("%v: install Debian's ca-certificates package (the project test script does)", err)
	}
	roots, err := ParseCertificatesPEM(b)
	if err != nil {
		tb.Fatal(err)
	}
	return roots
}

// openssl returns the path of the openssl command; its absence fails the
// test.
func openssl(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("openssl"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/openssl"); err == nil {
		return "/usr/bin/openssl"
	}
	tb.Fatal("openssl not found: run the project test script, which installs it (apt-get install openssl)")
	return ""
}

// opensslVerify runs openssl smime -verify on msg, trusting caPEM, and
// returns the content openssl extracts.
func opensslVerify(tb testing.TB, msg, caPEM []byte) ([]byte, error) {
	tb.Helper()
	dir := tb.TempDir()
	in, ca, out := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "content")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(openssl(tb), "smime", "-verify", "-in", in, "-CAfile", ca, "-purpose", "any", "-out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("openssl smime -verify: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if !strings.Contains(stderr.String(), "Verification successful") {
		return nil, fmt.Errorf("openssl smime -verify: %s", stderr.String())
	}
	return os.ReadFile(out)
}

// pecEntity returns a MIME entity shaped like the body of a PEC message
// (RFC 6109 §4.3): multipart/mixed with a text part, daticert.xml and, when
// withOriginal, the original message as postacert.eml. The text part is
// padded so the entity is about size bytes long.
func pecEntity(size int, withOriginal bool) []byte {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=\"----=_mixed_0001\"\r\n\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n\r\n------=_mixed_0001\r\n")
	b.WriteString("Content-Type: text/plain; charset=\"iso-8859-1\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString("--Questo =E8 un Messaggio di Posta Certificata--\r\n\r\n")
	b.WriteString("Il giorno 07/11/2026 alle ore 16:52:00 (+0100) il messaggio con Oggetto\r\n")
	b.WriteString("\"prova\" =E8 stato inviato dal mittente \"mario.rossi@pec.custode.test\"\r\n")
	const daticert = `PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPHBvc3RhY2VydCB0aXBvPSJwb3N0YS1jZXJ0aWZpY2F0YSIgZXJyb3JlPSJuZXNzdW5vIj4KPC9wb3N0YWNlcnQ+Cg==`
	tail := "\r\n------=_mixed_0001\r\nContent-Type: application/xml; name=\"daticert.xml\"\r\n" +
		"Content-Disposition: inline; filename=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + daticert + "\r\n"
	if withOriginal {
		tail += "\r\n------=_mixed_0001\r\nContent-Type: message/rfc822; name=\"postacert.eml\"\r\n" +
			"Content-Disposition: inline; filename=\"postacert.eml\"\r\n\r\n" +
			"From: mario.rossi@pec.custode.test\r\nTo: anna.bianchi@pec.custode.test\r\nSubject: prova\r\n" +
			"Message-ID: <1@client.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
			"Buongiorno, in allegato la documentazione richiesta.\r\n"
	}
	tail += "\r\n------=_mixed_0001--\r\n"
	for b.Len()+len(tail) < size {
		b.WriteString("Riga di riempimento del testo per portare il messaggio alla dimensione voluta.\r\n")
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// pecHeader returns the outer header of a ricevuta signed by p, with the
// given From value.
func pecHeader(from string) []Field {
	return []Field{
		{Name: "Date", Value: "Sat, 7 Nov 2026 16:52:00 +0100"},
		{Name: "Subject", Value: "ACCETTAZIONE: prova"},
		{Name: "From", Value: from},
		{Name: "To", Value: "mario.rossi@pec.custode.test"},
		{Name: "Message-ID", Value: "<opec1.20261107165200.00001.01.1.1@pec.custode.test>"},
		{Name: "X-Ricevuta", Value: "accettazione"},
		{Name: "X-Riferimento-Message-ID", Value: "<1@client.example>"},
	}
}

// signedMsg returns a message signed by p with From set to from.
func signedMsg(tb testing.TB, p *testPKI, from string, entity []byte) []byte {
	tb.Helper()
	msg, err := SignMessage(pecHeader(from), entity, p.signer)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}
