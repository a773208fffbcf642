package igpec

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
)

var update = flag.Bool("update", false, "rewrite the certificates and golden files in testdata")

// fixtureCerts describes the invented signing certificates of the test
// gestori. They are self-signed Ed25519 certificates whose keys derive from
// their names, so -update rewrites the same bytes.
var fixtureCerts = []struct {
	name, cn, org, email string
	serial               int64
	from, to             int // years
}{
	{"alfa", "Posta Certificata Alfa PEC", "Alfa PEC S.p.A.", "posta-certificata@pec.alfa.example", 101, 2024, 2034},
	{"beta-2024", "Posta Certificata Beta", "Beta Posta Certificata Società S.r.l.", "posta-certificata@pec.beta.example", 201, 2024, 2026},
	{"beta-2025", "Posta Certificata Beta", "Beta Posta Certificata Società S.r.l.", "posta-certificata@pec.beta.example", 202, 2025, 2027},
	{"gamma", "Posta Certificata Gamma", "Gamma PEC S.r.l.", "posta-certificata@pec.gamma.example", 301, 2024, 2034},
	{"gamma-test", "Posta Certificata Gamma Test", "Gamma PEC S.r.l.", "posta-certificata@pec-test.gamma.example", 302, 2024, 2034},
	{"custode", "Posta Certificata Custode", "Custode PEC S.p.A.", "posta-certificata@pec.custode.example", 401, 2025, 2035},
	{"unknown", "Posta Certificata Ignota", "Ignota S.p.A.", "posta-certificata@pec.ignota.example", 501, 2024, 2034},
}

// TestFixtureCertificates writes testdata/certs/*.pem under -update, and
// otherwise checks that every fixture certificate parses.
func TestFixtureCertificates(t *testing.T) {
	for _, fc := range fixtureCerts {
		path := filepath.Join("testdata", "certs", fc.name+".pem")
		if *update {
			seed := sha256.Sum256([]byte("custode igpec test key " + fc.name))
			key := ed25519.NewKeyFromSeed(seed[:])
			tmpl := &x509.Certificate{
				SerialNumber:   big.NewInt(fc.serial),
				Subject:        pkix.Name{CommonName: fc.cn, Organization: []string{fc.org}, Country: []string{"IT"}},
				NotBefore:      time.Date(fc.from, 1, 1, 0, 0, 0, 0, time.UTC),
				NotAfter:       time.Date(fc.to, 1, 1, 0, 0, 0, 0, time.UTC),
				KeyUsage:       x509.KeyUsageDigitalSignature,
				EmailAddresses: []string{fc.email},
			}
			der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		loadCert(t, fc.name)
	}
}

// loadCert reads testdata/certs/name.pem.
func loadCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "certs", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s.pem: no PEM block", name)
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s.pem: %v", name, err)
	}
	return cert
}

// loadIndex parses testdata/name.
func loadIndex(t testing.TB, name string) *Index {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix, err := ParseLDIF(f)
	if err != nil {
		t.Fatalf("ParseLDIF(%s): %v", name, err)
	}
	return ix
}

func TestParseFixture(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	if got, want := ix.LDIFLocationURL(), "https://igpec.indice.example/igpec.ldif.p7m"; got != want {
		t.Errorf("root LDIFLocationURL = %q, want %q", got, want)
	}
	der := func(name string) []byte { return loadCert(t, name).Raw }
	want := []*Provider{
		{
			DN:                "providerName=Alfa PEC S.p.A.,o=postacert",
			Name:              "Alfa PEC S.p.A.",
			CertificateHashes: []string{CertificateHash(der("alfa"))},
			Certificates:      [][]byte{der("alfa")},
			MailReceipt:       "servizio-ricevute@pec.alfa.example",
			ManagedDomains:    []string{"pec.alfa.example", "cert.azienda-uno.example", "PEC.Comune-Esempio.example"},
			LDIFLocationURL:   "https://alfa.example/igpec/alfa.ldif.p7m",
			Description:       []string{"Servizi di posta certificata per imprese"},
		},
		{
			DN:   "providerName=Beta Posta Certificata Società S.r.l.,o=postacert",
			Name: "Beta Posta Certificata Società S.r.l.",
			CertificateHashes: []string{
				CertificateHash(der("beta-2024")), CertificateHash(der("beta-2025")),
			},
			Certificates:    [][]byte{der("beta-2024"), der("beta-2025")},
			MailReceipt:     "ricevute@pec.beta.example",
			ManagedDomains:  []string{"pec.beta.example", "legal.beta.example"},
			LDIFLocationURL: "https://beta.example/ldif/beta.ldif.p7m",
		},
		{
			DN:                "providerName=Gamma PEC S.r.l.,o=postacert",
			Name:              "Gamma PEC S.r.l.",
			CertificateHashes: []string{CertificateHash(der("gamma"))},
			Certificates:      [][]byte{der("gamma")},
			MailReceipt:       "presa-in-carico@pec.gamma.example",
			ManagedDomains:    []string{"pec.gamma.example"},
			Description:       []string{"Produzione", "Gestore di prova: riga lunga che nel file è ripiegata su più righe per verificare le continuazioni"},
		},
		{
			DN:                "providerUnits=test,providerName=Gamma PEC S.r.l.,o=postacert",
			Name:              "Gamma PEC S.r.l.",
			Units:             []string{"test"},
			CertificateHashes: []string{CertificateHash(der("gamma-test"))},
			Certificates:      [][]byte{der("gamma-test")},
			MailReceipt:       "presa-in-carico@pec-test.gamma.example",
			ManagedDomains:    []string{"pec-test.gamma.example", "pec.gamma.example"},
		},
	}
	got := ix.Providers()
	if len(got) != len(want) {
		t.Fatalf("%d providers, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("provider %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestProviderByCertificate(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	mismatch := loadIndex(t, "mismatch.ldif")
	tests := []struct {
		name    string
		index   *Index
		cert    string
		want    string // providerName
		unit    bool
		wantErr error
	}{
		{"single certificate", ix, "alfa", "Alfa PEC S.p.A.", false, nil},
		{"old certificate during rollover", ix, "beta-2024", "Beta Posta Certificata Società S.r.l.", false, nil},
		{"new certificate during rollover", ix, "beta-2025", "Beta Posta Certificata Società S.r.l.", false, nil},
		{"secondary environment", ix, "gamma-test", "Gamma PEC S.r.l.", true, nil},
		{"not a gestore", ix, "unknown", "", false, ErrUnknownCertificate},
		{"hash listed, certificate differs", mismatch, "alfa", "", false, ErrCertificateMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := loadCert(t, tt.cert)
			for _, lookup := range []func() (*Provider, error){
				func() (*Provider, error) { return tt.index.ProviderByCertificate(cert) },
				func() (*Provider, error) { return tt.index.ProviderByCertificateDER(cert.Raw) },
			} {
				p, err := lookup()
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("error %v, want %v", err, tt.wantErr)
					}
					if !strings.Contains(err.Error(), CertificateHash(cert.Raw)) {
						t.Errorf("error %q does not give the hash", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.Name != tt.want || (len(p.Units) > 0) != tt.unit {
					t.Errorf("got %q (units %v), want %q", p.Name, p.Units, tt.want)
				}
			}
		})
	}
	if _, err := ix.ProviderByCertificate(nil); err == nil {
		t.Error("lookup of a nil certificate succeeded")
	}
}

func TestProvidersByHash(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	h := CertificateHash(loadCert(t, "alfa").Raw)
	colons := strings.ToLower(h[:2] + ":" + h[2:4] + ":" + h[4:])
	for _, q := range []string{h, strings.ToLower(h), colons} {
		if got := ix.ProvidersByHash(q); len(got) != 1 || got[0].Name != "Alfa PEC S.p.A." {
			t.Errorf("ProvidersByHash(%q) = %v", q, got)
		}
	}
	if got := ix.ProvidersByHash("not a hash"); got != nil {
		t.Errorf("ProvidersByHash(garbage) = %v", got)
	}
}

func TestDomains(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	tests := []struct {
		domain      string
		provider    string
		mailReceipt string
	}{
		{"pec.alfa.example", "Alfa PEC S.p.A.", "servizio-ricevute@pec.alfa.example"},
		{"PEC.ALFA.EXAMPLE", "Alfa PEC S.p.A.", "servizio-ricevute@pec.alfa.example"},
		{"pec.alfa.example.", "Alfa PEC S.p.A.", "servizio-ricevute@pec.alfa.example"},
		{"pec.comune-esempio.example", "Alfa PEC S.p.A.", "servizio-ricevute@pec.alfa.example"},
		{" Legal.Beta.Example ", "Beta Posta Certificata Società S.r.l.", "ricevute@pec.beta.example"},
		{"pec.gamma.example", "Gamma PEC S.r.l.", "presa-in-carico@pec.gamma.example"}, // main record first
		{"pec-test.gamma.example", "Gamma PEC S.r.l.", "presa-in-carico@pec-test.gamma.example"},
		{"alfa.example", "", ""},         // parent of a managed domain
		{"sub.pec.alfa.example", "", ""}, // child of a managed domain
		{"gmail.example", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		p, ok := ix.ProviderByDomain(tt.domain)
		if ok != (tt.provider != "") || (ok && p.Name != tt.provider) {
			t.Errorf("ProviderByDomain(%q) = %v, %v; want %q", tt.domain, p, ok, tt.provider)
		}
		if got := ix.IsManagedDomain(tt.domain); got != (tt.provider != "") {
			t.Errorf("IsManagedDomain(%q) = %v", tt.domain, got)
		}
		mr, ok := ix.MailReceipt(tt.domain)
		if mr != tt.mailReceipt || ok != (tt.mailReceipt != "") {
			t.Errorf("MailReceipt(%q) = %q, %v; want %q", tt.domain, mr, ok, tt.mailReceipt)
		}
	}
}

func TestRecipientTipo(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	tests := []struct {
		address string
		want    daticert.TipoDestinatario
		wantErr bool
	}{
		{"anna.bianchi@pec.beta.example", daticert.DestinatarioCertificato, false},
		{"Anna.Bianchi@PEC.Beta.Example", daticert.DestinatarioCertificato, false},
		{"<ufficio@pec.comune-esempio.example>", daticert.DestinatarioCertificato, false},
		{"\"strano@nome\"@pec.alfa.example", daticert.DestinatarioCertificato, false},
		{"mario@mail.example", daticert.DestinatarioEsterno, false},
		{"mario@alfa.example", daticert.DestinatarioEsterno, false},
		{"senza-chiocciola", "", true},
		{"@pec.alfa.example", "", true},
		{"mario@", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ix.RecipientTipo(tt.address)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("RecipientTipo(%q) = %q, %v; want %q (error %v)", tt.address, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestProvidersByName(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	if got := ix.ProvidersByName("gamma pec s.r.l."); len(got) != 2 || len(got[0].Units) != 0 || got[1].Units[0] != "test" {
		t.Errorf("ProvidersByName(gamma) = %+v", got)
	}
	if got := ix.ProvidersByName("Alfa PEC S.p.A."); len(got) != 1 {
		t.Errorf("ProvidersByName(alfa) = %+v", got)
	}
	if got := ix.ProvidersByName("Nessuno"); len(got) != 0 {
		t.Errorf("ProvidersByName(unknown) = %+v", got)
	}
}

func TestManages(t *testing.T) {
	ix := loadIndex(t, "igpec.ldif")
	p, err := ix.ProviderByCertificate(loadCert(t, "alfa"))
	if err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]bool{
		"pec.alfa.example": true, "PEC.COMUNE-ESEMPIO.EXAMPLE": true, "pec.beta.example": false, "": false,
	} {
		if got := p.Manages(domain); got != want {
			t.Errorf("Manages(%q) = %v, want %v", domain, got, want)
		}
	}
}

// TestIndexIsACopy checks that changing the records given to NewIndex, or
// the slices returned, does not change the index.
func TestIndexIsACopy(t *testing.T) {
	p := ownProvider(t)
	ix, err := NewIndex(p)
	if err != nil {
		t.Fatal(err)
	}
	p.ManagedDomains[0] = "altro.example"
	p.Certificates[0][0] ^= 0xFF
	if !ix.IsManagedDomain("pec.custode.example") {
		t.Error("index changed with its input's domains")
	}
	if _, err := ix.ProviderByCertificate(loadCert(t, "custode")); err != nil {
		t.Errorf("index changed with its input's certificate: %v", err)
	}
	list := ix.Providers()
	list[0] = nil
	if ix.Providers()[0] == nil {
		t.Error("Providers returned the index's own slice")
	}
}

// ownProvider returns the record of our own invented gestore.
func ownProvider(t testing.TB) *Provider {
	p := &Provider{
		Name:            "Custode PEC S.p.A.",
		MailReceipt:     "servizio-ricevute@pec.custode.example",
		ManagedDomains:  []string{"pec.custode.example", "legalmail.cliente.example"},
		LDIFLocationURL: "https://custode.example/igpec/custode.ldif.p7m",
		Description:     []string{"Custode: gestore PEC con archivio delle evidenze"},
	}
	p.AddCertificate(loadCert(t, "custode").Raw)
	p.AddCertificate(loadCert(t, "custode").Raw) // idempotent
	return p
}

func TestWriteOwnEntry(t *testing.T) {
	p := ownProvider(t)
	if len(p.Certificates) != 1 || len(p.CertificateHashes) != 1 {
		t.Fatalf("AddCertificate twice gave %d certificates, %d hashes", len(p.Certificates), len(p.CertificateHashes))
	}
	var buf bytes.Buffer
	if err := WriteLDIF(&buf, p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "custode.ldif")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteLDIF differs from %s (run go test -update if intended)\ngot:\n%s", path, buf.Bytes())
	}
	for i, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if len(l) > foldWidth {
			t.Errorf("line %d is %d bytes long: %q", i+1, len(l), l)
		}
	}
	ix, err := ParseLDIF(&buf)
	if err != nil {
		t.Fatal(err)
	}
	p.DN = "providerName=Custode PEC S.p.A.,o=postacert"
	if got := ix.Providers(); len(got) != 1 || !reflect.DeepEqual(got[0], p) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
	}
}

// TestWriteRoundTrip writes the fixture's records and values that need
// base64 or escaping, and reads them back.
func TestWriteRoundTrip(t *testing.T) {
	records := loadIndex(t, "igpec.ldif").Providers()
	odd := ownProvider(t)
	odd.DN = ""
	odd.Name = " Nome, con \"virgole\" + segni; <strani> = # "
	odd.Units = []string{":inizio", "<minore", "fine ", "àccento", "riga\nnuova"}
	odd.ManagedDomains = []string{"pec.strano.example"}
	odd.Description = []string{"", strings.Repeat("lunga ", 40), "tab\tnel mezzo"}
	records = append(records, odd)

	var buf bytes.Buffer
	if err := WriteLDIF(&buf, records...); err != nil {
		t.Fatal(err)
	}
	ix, err := ParseLDIF(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("ParseLDIF: %v\n%s", err, buf.Bytes())
	}
	got := ix.Providers()
	odd.DN = `providerName=\ Nome\, con \"virgole\" \+ segni\; \<strani\> \= #\ ,o=postacert`
	for i := range records {
		if !reflect.DeepEqual(got[i], records[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], records[i])
		}
	}
	for i, l := range strings.Split(buf.String(), "\n") {
		if len(l) > foldWidth {
			t.Errorf("line %d is %d bytes long", i+1, len(l))
		}
	}
}

func TestWriteInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Provider)
		attr   string
	}{
		{"no name", func(p *Provider) { p.Name = "" }, "providerName"},
		{"no hash", func(p *Provider) { p.CertificateHashes = nil }, "providerCertificateHash"},
		{"lower-case hash", func(p *Provider) { p.CertificateHashes[0] = strings.ToLower(p.CertificateHashes[0]) }, "providerCertificateHash"},
		{"no certificate", func(p *Provider) { p.Certificates = nil }, "providerCertificate"},
		{"no mailReceipt", func(p *Provider) { p.MailReceipt = " " }, "mailReceipt"},
		{"no domains", func(p *Provider) { p.ManagedDomains = nil }, "managedDomains"},
		{"address as domain", func(p *Provider) { p.ManagedDomains = []string{"a@b.example"} }, "managedDomains"},
		{"invalid UTF-8", func(p *Provider) { p.Description = []string{"\xff"} }, "description"},
		{"empty unit", func(p *Provider) { p.Units = []string{""} }, "providerUnit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ownProvider(t)
			tt.mutate(p)
			var buf bytes.Buffer
			err := WriteLDIF(&buf, p)
			if err == nil || !strings.Contains(err.Error(), tt.attr) {
				t.Fatalf("WriteLDIF error %v, want one naming %s", err, tt.attr)
			}
			if buf.Len() != 0 {
				t.Errorf("WriteLDIF wrote %d bytes for an invalid record", buf.Len())
			}
			if _, err := NewIndex(p); err == nil {
				t.Error("NewIndex accepted an invalid record")
			}
		})
	}
	if err := WriteLDIF(new(bytes.Buffer), nil); err == nil {
		t.Error("WriteLDIF(nil) succeeded")
	}
}

func TestNewIndexDomainConflict(t *testing.T) {
	a := ownProvider(t)
	b := ownProvider(t)
	b.Name = "Altro Gestore S.p.A."
	b.ManagedDomains = []string{"PEC.Custode.Example."}
	if _, err := NewIndex(a, b); err == nil || !strings.Contains(err.Error(), "already managed") {
		t.Fatalf("NewIndex with a domain of two gestori: %v", err)
	}
	b.Name = a.Name // a secondary environment of the same gestore may share it
	if _, err := NewIndex(a, b); err != nil {
		t.Fatal(err)
	}
}
