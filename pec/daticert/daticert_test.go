package daticert

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files and fuzz seeds in testdata")

var (
	allTipi = []Tipo{
		TipoAccettazione, TipoNonAccettazione, TipoPresaInCarico, TipoAvvenutaConsegna,
		TipoPostaCertificata, TipoErroreConsegna, TipoPreavvisoErroreConsegna, TipoRilevazioneVirus,
	}
	allErrori = []Errore{ErroreNessuno, ErroreNoDest, ErroreNoDominio, ErroreVirus, ErroreAltro}
)

// exampleModel returns a plausible Daticert of the given tipo and errore,
// with the optional elements a gestore would fill for that tipo. Even tipi
// fall in winter (+0100), odd ones in summer (+0200).
func exampleModel(i int, tipo Tipo, errore Errore) *Daticert {
	when := time.Date(2024, time.January, 15, 9, 30, 5, 0, time.UTC)
	if i%2 == 1 {
		when = time.Date(2024, time.July, 2, 21, 45, 0, 0, time.UTC) // 23:45 in Rome
	}
	d := &Daticert{
		Tipo:             tipo,
		Errore:           errore,
		Mittente:         "mario.rossi@pec.alfa.example",
		Destinatari:      []Destinatario{{Address: "anna.bianchi@pec.beta.example", Tipo: DestinatarioCertificato}},
		ReplyTo:          "mario.rossi@pec.alfa.example",
		Oggetto:          "Fattura n. 12/2024 & allegati <bozza>",
		GestoreEmittente: "Custode PEC S.p.A.",
		Time:             when,
		Identificativo:   "custode.20240115103005.00042.01.1.7@pec.custode.example",
		MessageID:        "<20240115.0930.x1@client.alfa.example>",
	}
	switch tipo {
	case TipoAccettazione, TipoNonAccettazione:
		d.Destinatari = append(d.Destinatari, Destinatario{Address: "ufficio@mail.gamma.example", Tipo: DestinatarioEsterno})
	case TipoPostaCertificata:
		d.Receipt = ReceiptBreve
	case TipoAvvenutaConsegna:
		d.Receipt = ReceiptCompleta
		d.Consegna = "anna.bianchi@pec.beta.example"
	case TipoPresaInCarico:
		d.Destinatari = append(d.Destinatari, Destinatario{Address: "luca.verdi@pec.beta.example", Tipo: DestinatarioCertificato})
		d.Ricezione = []string{"anna.bianchi@pec.beta.example", "luca.verdi@pec.beta.example"}
	case TipoErroreConsegna, TipoPreavvisoErroreConsegna, TipoRilevazioneVirus:
		d.Consegna = "anna.bianchi@pec.beta.example"
	}
	if errore != ErroreNessuno {
		d.ErroreEsteso = "5.1.1 - Custode PEC S.p.A. - indirizzo non valido"
	}
	return d
}

// equalModel reports whether two models hold the same data: the same
// instant for Time, equal values elsewhere.
func equalModel(a, b *Daticert) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	x, y := *a, *b
	x.Time, y.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

// requireXmllint returns the path of xmllint, failing the test if it is not
// installed: the DTD check must never be skipped silently.
func requireXmllint(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatalf("xmllint not found (Debian package libxml2-utils): run the project's test script, which installs it: %v", err)
	}
	return path
}

// validateDTD checks the document in file against testdata/daticert.dtd.
func validateDTD(t testing.TB, file string) error {
	t.Helper()
	out, err := exec.Command(requireXmllint(t), "--noout", "--dtdvalid", filepath.Join("testdata", "daticert.dtd"), file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xmllint: %v\n%s", err, out)
	}
	return nil
}

// golden compares got with testdata/golden/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) string {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
	return path
}

// TestMarshalAllCombinations marshals every tipo/errore pair the DTD allows,
// checks the output against its golden file and the DTD, and parses it back.
func TestMarshalAllCombinations(t *testing.T) {
	for i, tipo := range allTipi {
		for _, errore := range allErrori {
			name := string(tipo) + "_" + string(errore)
			t.Run(name, func(t *testing.T) {
				in := exampleModel(i, tipo, errore)
				out, err := Marshal(in)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				path := golden(t, name+".xml", out)
				if err := validateDTD(t, path); err != nil {
					t.Fatalf("%s is not valid against the DTD: %v", path, err)
				}
				back, err := Parse(out)
				if err != nil {
					t.Fatalf("Parse(Marshal(d)): %v", err)
				}
				if !equalModel(in, back) {
					t.Fatalf("round trip changed the model\n in: %+v\nout: %+v", in, back)
				}
			})
		}
	}
}

// TestDTDCheckBites makes sure the xmllint check rejects a document the DTD
// does not allow, so that a passing check means something.
func TestDTDCheckBites(t *testing.T) {
	out, err := Marshal(exampleModel(0, TipoAvvenutaConsegna, ErroreNessuno))
	if err != nil {
		t.Fatal(err)
	}
	// Swap consegna before ricevuta: wrong order for the DTD.
	bad := strings.Replace(string(out), "        <ricevuta tipo=\"completa\" />\n", "", 1)
	bad = strings.Replace(bad, "    </dati>", "        <ricevuta tipo=\"completa\" />\n    </dati>", 1)
	file := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := validateDTD(t, file); err == nil {
		t.Fatalf("xmllint accepted a document with elements out of order:\n%s", bad)
	}
}

func TestMarshalZona(t *testing.T) {
	tests := []struct {
		in          time.Time
		giorno, ora string
		zona        string
	}{
		{time.Date(2014, 11, 7, 15, 52, 0, 0, time.UTC), "07/11/2014", "16:52:00", "+0100"},
		{time.Date(2012, 9, 20, 8, 0, 0, 0, time.UTC), "20/09/2012", "10:00:00", "+0200"},
		// Spring forward, 31 March 2024 at 01:00 UTC.
		{time.Date(2024, 3, 31, 0, 59, 59, 0, time.UTC), "31/03/2024", "01:59:59", "+0100"},
		{time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC), "31/03/2024", "03:00:00", "+0200"},
		// Fall back, 27 October 2024 at 01:00 UTC: 02:xx happens twice.
		{time.Date(2024, 10, 27, 0, 59, 59, 0, time.UTC), "27/10/2024", "02:59:59", "+0200"},
		{time.Date(2024, 10, 27, 1, 0, 0, 0, time.UTC), "27/10/2024", "02:00:00", "+0100"},
		// A time given in another zone is converted; fractions are dropped.
		{time.Date(2024, 12, 31, 23, 30, 0, 999, time.FixedZone("", -5*3600)), "01/01/2025", "05:30:00", "+0100"},
	}
	for _, tt := range tests {
		d := exampleModel(0, TipoAccettazione, ErroreNessuno)
		d.Time = tt.in
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", tt.in, err)
		}
		want := fmt.Sprintf("        <data zona=\"%s\">\n            <giorno>%s</giorno>\n            <ora>%s</ora>\n        </data>\n", tt.zona, tt.giorno, tt.ora)
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal(%v): want\n%s\nin\n%s", tt.in, want, out)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if !back.Time.Equal(tt.in.Truncate(time.Second)) {
			t.Errorf("Parse(Marshal(%v)).Time = %v", tt.in, back.Time)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(d *Daticert)
		field   string
		missing bool
	}{
		{"no tipo", func(d *Daticert) { d.Tipo = "" }, "postacert/@tipo", true},
		{"unknown tipo", func(d *Daticert) { d.Tipo = "errore" }, "postacert/@tipo", false},
		{"unknown errore", func(d *Daticert) { d.Errore = "grave" }, "postacert/@errore", false},
		{"no mittente", func(d *Daticert) { d.Mittente = "" }, "intestazione/mittente", true},
		{"padded mittente", func(d *Daticert) { d.Mittente = " a@b.example" }, "intestazione/mittente", false},
		{"no destinatari", func(d *Daticert) { d.Destinatari = nil }, "intestazione/destinatari", true},
		{"empty destinatario", func(d *Daticert) { d.Destinatari[0].Address = "" }, "intestazione/destinatari[1]", true},
		{"destinatario without tipo", func(d *Daticert) { d.Destinatari[1].Tipo = "" }, "intestazione/destinatari[2]/@tipo", true},
		{"unknown destinatario tipo", func(d *Daticert) { d.Destinatari[1].Tipo = "pec" }, "intestazione/destinatari[2]/@tipo", false},
		{"control character in oggetto", func(d *Daticert) { d.Oggetto = "a\x00b" }, "intestazione/oggetto", false},
		{"invalid UTF-8 in oggetto", func(d *Daticert) { d.Oggetto = "a\xffb" }, "intestazione/oggetto", false},
		{"no gestore-emittente", func(d *Daticert) { d.GestoreEmittente = "" }, "dati/gestore-emittente", true},
		{"no data", func(d *Daticert) { d.Time = time.Time{} }, "dati/data", true},
		{"data too early", func(d *Daticert) { d.Time = time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC) }, "dati/data", false},
		{"data too late", func(d *Daticert) { d.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "dati/data", false},
		{"no identificativo", func(d *Daticert) { d.Identificativo = "" }, "dati/identificativo", true},
		{"unknown ricevuta tipo", func(d *Daticert) { d.Receipt = "lunga" }, "dati/ricevuta/@tipo", false},
		{"empty ricezione", func(d *Daticert) { d.Ricezione = []string{"x@y.example", ""} }, "dati/ricezione[2]", true},
		{"padded errore-esteso", func(d *Daticert) { d.ErroreEsteso = "5.1.1 \n" }, "dati/errore-esteso", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := exampleModel(0, TipoAccettazione, ErroreNessuno)
			tt.mutate(d)
			for _, err := range []error{d.Validate(), marshalErr(d)} {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not a *FieldError", err)
				}
				if fe.Field != tt.field {
					t.Errorf("field = %q, want %q (error %v)", fe.Field, tt.field, err)
				}
				if errors.Is(err, ErrMissing) != tt.missing {
					t.Errorf("errors.Is(%v, ErrMissing) = %v, want %v", err, !tt.missing, tt.missing)
				}
				if !strings.Contains(err.Error(), tt.field) {
					t.Errorf("error %q does not name the field %q", err, tt.field)
				}
			}
		})
	}
	if err := (*Daticert)(nil).Validate(); err == nil {
		t.Error("Validate of a nil model succeeded")
	}
}

func marshalErr(d *Daticert) error {
	out, err := Marshal(d)
	if err == nil {
		return fmt.Errorf("Marshal succeeded: %s", out)
	}
	return err
}

// TestMarshalText checks escaping and verbatim text: markup characters,
// carriage returns, non-ASCII text and an empty risposte.
func TestMarshalText(t *testing.T) {
	d := exampleModel(1, TipoPostaCertificata, ErroreNessuno)
	d.Oggetto = "  Re: «preventivo» città & co. <urgente> \"ok\" 'sì'\r\n\tfine € 😀 "
	d.ReplyTo = ""
	d.Errore = "" // written as nessuno
	out, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<postacert tipo="posta-certificata" errore="nessuno">`,
		"<oggetto>  Re: «preventivo» città &amp; co. &lt;urgente&gt; \"ok\" 'sì'&#xD;\n\tfine € 😀 </oggetto>",
		"<risposte></risposte>",
		"<msgid>&lt;20240115.0930.x1@client.alfa.example&gt;</msgid>",
		`<ricevuta tipo="breve" />`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	file := filepath.Join(t.TempDir(), "text.xml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := validateDTD(t, file); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	d.Errore = ErroreNessuno
	if !equalModel(d, back) {
		t.Fatalf("round trip changed the model\n in: %q\nout: %q", d.Oggetto, back.Oggetto)
	}
}

// TestMarshalNoOptional leaves every optional element out.
func TestMarshalNoOptional(t *testing.T) {
	d := &Daticert{
		Tipo:             TipoAccettazione,
		Errore:           ErroreNessuno,
		Mittente:         "a@pec.alfa.example",
		Destinatari:      []Destinatario{{Address: "b@pec.beta.example", Tipo: DestinatarioCertificato}},
		GestoreEmittente: "Custode PEC S.p.A.",
		Time:             time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC),
		Identificativo:   "id1@pec.custode.example",
	}
	out, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	path := golden(t, "minimal.xml", out)
	if err := validateDTD(t, path); err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"<oggetto", "<msgid", "<ricevuta", "<consegna", "<ricezione", "<errore-esteso"} {
		if strings.Contains(string(out), absent) {
			t.Errorf("output has %s although the field is empty", absent)
		}
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !equalModel(d, back) {
		t.Fatalf("round trip changed the model\n in: %+v\nout: %+v", d, back)
	}
}

// writeSeed writes b to the fuzz seed corpus of FuzzParse under -update.
func writeSeed(t *testing.T, name string, b []byte) {
	t.Helper()
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
	body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
