package daticert

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sharedDir returns the shared/ directory beside the module root: the
// directory holding go.mod, found by walking up from the package directory.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
}

// daticertFromEML returns the decoded daticert.xml part of a PEC message.
func daticertFromEML(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading PEC sample: %v (the samples live in ../shared/pec-samples beside the module)", err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := findDaticert(msg.Header.Get("Content-Type"), msg.Body, 0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b == nil {
		t.Fatalf("%s: no daticert.xml part", path)
	}
	return b
}

// findDaticert walks a MIME tree for the part named daticert.xml and
// returns its decoded body, or nil if there is none.
func findDaticert(contentType string, body io.Reader, depth int) ([]byte, error) {
	if depth > 8 {
		return nil, errors.New("MIME nesting too deep")
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mediaType, "multipart/") {
		return nil, nil
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		_, ctParams, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if p.FileName() == "daticert.xml" || ctParams["name"] == "daticert.xml" {
			var r io.Reader = p
			if strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "base64") {
				r = base64.NewDecoder(base64.StdEncoding, p)
			}
			return io.ReadAll(r)
		}
		b, err := findDaticert(p.Header.Get("Content-Type"), p, depth+1)
		if err != nil || b != nil {
			return b, err
		}
	}
}

// TestParseSamples parses the daticert of the real Aruba messages and checks
// the fields given in PEC.md §2.2.
func TestParseSamples(t *testing.T) {
	rome := time.FixedZone("", 3600)
	tests := []struct {
		file string
		want Daticert
	}{
		{
			"01_aruba_2014_busta-trasporto_completa.eml",
			Daticert{
				Tipo:             TipoPostaCertificata,
				Errore:           ErroreNessuno,
				Mittente:         "thinkstudio@pec.it",
				Destinatari:      []Destinatario{{"l.battistini@pec.it", DestinatarioCertificato}},
				ReplyTo:          "thinkstudio@pec.it",
				Oggetto:          "Re: archetipo",
				GestoreEmittente: "ARUBA PEC S.p.A.",
				Time:             time.Date(2014, 11, 7, 16, 52, 0, 0, rome),
				Identificativo:   "opec275.20141107165200.03048.08.1.17@pec.aruba.it",
				MessageID:        "<NEOEQO$8B558E13C0664DE7004C1EFB790D1A09@pec.it>",
				Receipt:          ReceiptCompleta,
			},
		},
		{
			"02_aruba_2014_ricevuta-accettazione.eml",
			Daticert{
				Tipo:             TipoAccettazione,
				Errore:           ErroreNessuno,
				Mittente:         "l.battistini@pec.it",
				Destinatari:      []Destinatario{{"thinkstudio@pec.it", DestinatarioCertificato}},
				ReplyTo:          "l.battistini@pec.it",
				Oggetto:          "test private",
				GestoreEmittente: "ARUBA PEC S.p.A.",
				Time:             time.Date(2014, 11, 14, 18, 26, 32, 0, rome),
				Identificativo:   "opec275.20141114182632.23219.07.1.48@pec.aruba.it",
				MessageID:        "<1415985992.182905912399292.346704098667155-openerp-private@elbati-Vostro-3550>",
			},
		},
		{
			"03_aruba_2014_ricevuta-avvenuta-consegna_completa.eml",
			Daticert{
				Tipo:             TipoAvvenutaConsegna,
				Errore:           ErroreNessuno,
				Mittente:         "l.battistini@pec.it",
				Destinatari:      []Destinatario{{"thinkstudio@pec.it", DestinatarioCertificato}},
				ReplyTo:          "l.battistini@pec.it",
				Oggetto:          "test private",
				GestoreEmittente: "ARUBA PEC S.p.A.",
				Time:             time.Date(2014, 11, 14, 18, 26, 32, 0, rome),
				Identificativo:   "opec275.20141114182632.23219.07.1.48@pec.aruba.it",
				MessageID:        "<1415985992.182905912399292.346704098667155-openerp-private@elbati-Vostro-3550>",
				Receipt:          ReceiptCompleta,
				Consegna:         "thinkstudio@pec.it",
			},
		},
	}
	dir := filepath.Join(sharedDir(t), "pec-samples")
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := daticertFromEML(t, filepath.Join(dir, tt.file))
			got, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equalModel(got, &tt.want) {
				t.Fatalf("Parse:\n got %+v\nwant %+v", got, &tt.want)
			}
			if _, off := got.Time.Zone(); off != 3600 {
				t.Errorf("zona offset = %d s, want 3600", off)
			}
			// Our Marshal of the same model reproduces Aruba's bytes exactly.
			out, err := Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, raw) {
				t.Errorf("Marshal(Parse(sample)) differs from the sample\n got:\n%s\nwant:\n%s", out, raw)
			}
		})
	}
}

// base is a small valid document; the tolerance cases vary it.
const base = `<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="avvenuta-consegna" errore="nessuno">
    <intestazione>
        <mittente>a@pec.alfa.example</mittente>
        <destinatari tipo="certificato">b@pec.beta.example</destinatari>
        <risposte>a@pec.alfa.example</risposte>
        <oggetto>prova</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>Custode PEC S.p.A.</gestore-emittente>
        <data zona="+0200">
            <giorno>02/07/2024</giorno>
            <ora>23:45:00</ora>
        </data>
        <identificativo>id1@pec.custode.example</identificativo>
        <msgid>&lt;m1@client.example&gt;</msgid>
        <ricevuta tipo="completa" />
        <consegna>b@pec.beta.example</consegna>
    </dati>
</postacert>
`

func baseModel() *Daticert {
	return &Daticert{
		Tipo:             TipoAvvenutaConsegna,
		Errore:           ErroreNessuno,
		Mittente:         "a@pec.alfa.example",
		Destinatari:      []Destinatario{{"b@pec.beta.example", DestinatarioCertificato}},
		ReplyTo:          "a@pec.alfa.example",
		Oggetto:          "prova",
		GestoreEmittente: "Custode PEC S.p.A.",
		Time:             time.Date(2024, 7, 2, 21, 45, 0, 0, time.UTC),
		Identificativo:   "id1@pec.custode.example",
		MessageID:        "<m1@client.example>",
		Receipt:          ReceiptCompleta,
		Consegna:         "b@pec.beta.example",
	}
}

func TestParseTolerance(t *testing.T) {
	latin1 := func(s string) string { // UTF-8 to ISO-8859-1, for the test only
		var b []byte
		for _, r := range s {
			b = append(b, byte(r))
		}
		return string(b)
	}
	tests := []struct {
		name string
		doc  string
		want func(d *Daticert)
	}{
		{"as emitted", base, nil},
		{"byte order mark", "\uFEFF" + base, nil},
		{"no XML declaration", strings.Replace(base, `<?xml version="1.0" encoding="UTF-8"?>`, "", 1), nil},
		{"lower-case utf-8 and standalone", strings.Replace(base, `encoding="UTF-8"?>`, `encoding='utf-8' standalone="yes"?>`, 1), nil},
		{"utf8 without hyphen", strings.Replace(base, `encoding="UTF-8"`, `encoding="utf8"`, 1), nil},
		{"ISO-8859-1 prolog",
			latin1(strings.Replace(strings.Replace(base, "UTF-8", "ISO-8859-1", 1), "<oggetto>prova", "<oggetto>perché è così", 1)),
			func(d *Daticert) { d.Oggetto = "perché è così" }},
		{"windows-1252 prolog",
			strings.Replace(strings.Replace(base, "UTF-8", "windows-1252", 1), "<oggetto>prova", "<oggetto>\x80 100 \x93ok\x94 caff\xe8", 1),
			func(d *Daticert) { d.Oggetto = "€ 100 “ok” caffè" }},
		{"attribute order and quotes",
			strings.Replace(base, `<postacert tipo="avvenuta-consegna" errore="nessuno">`, `<postacert errore='nessuno'   tipo = "avvenuta-consegna" >`, 1), nil},
		{"one line, no indentation", strings.Join(strings.Fields(base), " "), func(d *Daticert) {}},
		{"CRLF line ends", strings.ReplaceAll(base, "\n", "\r\n"), nil},
		{"white space around values",
			strings.Replace(strings.Replace(base, "<mittente>a@pec.alfa.example</mittente>", "<mittente>\n\t a@pec.alfa.example \n</mittente>", 1),
				"<giorno>02/07/2024</giorno>", "<giorno> 02/07/2024 </giorno>", 1), nil},
		{"msgid unescaped with CDATA", strings.Replace(base, "&lt;m1@client.example&gt;", "<![CDATA[<m1@client.example>]]>", 1), nil},
		{"msgid with numeric references", strings.Replace(base, "&lt;m1@client.example&gt;", "&#60;m1@client.example&#x3E;", 1), nil},
		{"comments and processing instructions",
			strings.Replace(base, "<dati>", "<!-- dati di certificazione --><?gestore build=7?><dati>", 1), nil},
		{"DOCTYPE without internal subset",
			strings.Replace(base, "<postacert ", "<!DOCTYPE postacert SYSTEM \"daticert.dtd\">\n<postacert ", 1), nil},
		{"errore missing is nessuno", strings.Replace(base, ` errore="nessuno"`, "", 1), nil},
		{"destinatari tipo missing is certificato", strings.Replace(base, `<destinatari tipo="certificato">`, "<destinatari>", 1), nil},
		{"optional elements missing",
			strings.NewReplacer("        <oggetto>prova</oggetto>\n", "", "        <msgid>&lt;m1@client.example&gt;</msgid>\n", "",
				"        <ricevuta tipo=\"completa\" />\n", "", "        <consegna>b@pec.beta.example</consegna>\n", "").Replace(base),
			func(d *Daticert) { d.Oggetto, d.MessageID, d.Receipt, d.Consegna = "", "", "", "" }},
		{"risposte missing", strings.Replace(base, "        <risposte>a@pec.alfa.example</risposte>\n", "", 1),
			func(d *Daticert) { d.ReplyTo = "" }},
		{"empty optional elements", strings.NewReplacer("<msgid>&lt;m1@client.example&gt;</msgid>", "<msgid/>",
			"<consegna>b@pec.beta.example</consegna>", "<consegna></consegna>").Replace(base),
			func(d *Daticert) { d.MessageID, d.Consegna = "", "" }},
		{"elements in another order",
			strings.Replace(strings.Replace(base, "        <ricevuta tipo=\"completa\" />\n", "", 1),
				"<gestore-emittente>", "<ricevuta tipo=\"completa\"/><gestore-emittente>", 1), nil},
		{"tipo spelled with spaces and capitals",
			strings.Replace(base, `tipo="avvenuta-consegna"`, `tipo="Avvenuta Consegna"`, 1), nil},
		{"tipo spelled with underscores",
			strings.Replace(strings.Replace(base, `tipo="avvenuta-consegna" errore="nessuno"`, `tipo="PRESA_IN_CARICO" errore="NO_DEST"`, 1),
				`<ricevuta tipo="completa" />`, `<ricevuta TIPO="Completa" />`, 1),
			func(d *Daticert) { d.Tipo, d.Errore = TipoPresaInCarico, ErroreNoDest }},
		{"attribute names capitalised",
			strings.NewReplacer(`<postacert tipo=`, `<postacert Tipo=`, `errore=`, `Errore=`, `zona=`, `Zona=`,
				`<destinatari tipo=`, `<destinatari Tipo=`).Replace(base), nil},
		{"zona with colon", strings.Replace(base, `zona="+0200"`, `zona="+02:00"`, 1), nil},
		{"zona in UTC", strings.NewReplacer(`zona="+0200"`, `zona="+0000"`, "23:45:00", "21:45:00").Replace(base), nil},
		{"ora without seconds", strings.Replace(base, "23:45:00", "23:45", 1), nil},
		{"unknown elements and attributes ignored",
			strings.NewReplacer(`<postacert `, `<postacert versione="2" `, "</dati>", "<firma-gestore>x</firma-gestore></dati>").Replace(base), nil},
		{"default namespace", strings.Replace(base, `<postacert `, `<postacert xmlns="urn:example:postacert" `, 1), nil},
		{"several destinatari and ricezione",
			strings.NewReplacer(
				`<destinatari tipo="certificato">b@pec.beta.example</destinatari>`,
				`<destinatari tipo="certificato">b@pec.beta.example</destinatari><destinatari tipo="esterno">c@mail.example</destinatari>`,
				"<consegna>b@pec.beta.example</consegna>",
				"<ricezione>b@pec.beta.example</ricezione><ricezione/><ricezione> c@mail.example </ricezione>").Replace(base),
			func(d *Daticert) {
				d.Destinatari = append(d.Destinatari, Destinatario{"c@mail.example", DestinatarioEsterno})
				d.Consegna = ""
				d.Ricezione = []string{"b@pec.beta.example", "c@mail.example"}
			}},
		{"errore-esteso", strings.NewReplacer(`errore="nessuno"`, `errore="altro"`,
			"</dati>", "<errore-esteso>5.1.1 - Custode - indirizzo non valido</errore-esteso></dati>").Replace(base),
			func(d *Daticert) {
				d.Errore = ErroreAltro
				d.ErroreEsteso = "5.1.1 - Custode - indirizzo non valido"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeSeed(t, "tolerance-"+tt.name, []byte(tt.doc))
			got, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, tt.doc)
			}
			want := baseModel()
			if tt.want != nil {
				tt.want(want)
			}
			if !equalModel(got, want) {
				t.Fatalf("Parse:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	laughs := `<?xml version="1.0"?>
<!DOCTYPE postacert [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
` + strings.Replace(base[strings.Index(base, "<postacert"):], "<oggetto>prova</oggetto>", "<oggetto>&lol9;</oggetto>", 1)
	xxe := `<?xml version="1.0"?><!DOCTYPE postacert [<!ENTITY x SYSTEM "file:///etc/passwd">]>` +
		strings.Replace(base[strings.Index(base, "<postacert"):], "<oggetto>prova</oggetto>", "<oggetto>&x;</oggetto>", 1)
	deep := func(n int) string {
		return strings.Replace(base, "<oggetto>prova</oggetto>",
			"<oggetto>prova</oggetto>"+strings.Repeat("<x>", n)+strings.Repeat("</x>", n), 1)
	}
	huge := strings.Replace(base, "<oggetto>prova</oggetto>", "<oggetto>"+strings.Repeat("a", 10<<20)+"</oggetto>", 1)

	tests := []struct {
		name    string
		doc     string
		wantErr error  // errors.Is target, if any
		wantMsg string // substring of the message
		noSeed  bool
	}{
		{"billion laughs", laughs, ErrDTDSubset, "internal subset", false},
		{"external entity", xxe, ErrDTDSubset, "internal subset", false},
		{"undeclared entity", strings.Replace(base, "prova", "&lol;", 1), nil, "entity", false},
		{"10 MB", huge, ErrTooLarge, "too large", true},
		{"one byte over the limit", base + strings.Repeat(" ", MaxSize+1-len(base)), ErrTooLarge, "limit", true},
		{"nested 17 deep", deep(MaxDepth - 1), ErrTooDeep, "nested", false},
		{"nested 100000 deep", deep(100000), ErrTooDeep, "nested", true},
		{"empty", "", nil, "no root element", false},
		{"not XML", "PEC", nil, "", false},
		{"truncated", base[:len(base)/2], nil, "", false},
		{"wrong root", strings.ReplaceAll(base, "postacert", "postacerta"), nil, "want <postacert>", false},
		{"second root", base + "<postacert/>", nil, "after the root", false},
		{"text after root", base + "x", nil, "outside the root", false},
		{"unsupported encoding", strings.Replace(base, "UTF-8", "Shift_JIS", 1), nil, "unsupported encoding", false},
		{"invalid UTF-8", strings.Replace(base, "prova", "prov\xe0", 1), nil, "UTF-8", false},
		{"no tipo", strings.Replace(base, `tipo="avvenuta-consegna" `, "", 1), ErrMissing, "postacert/@tipo", false},
		{"unknown tipo", strings.Replace(base, `tipo="avvenuta-consegna"`, `tipo="errore"`, 1), nil, `unknown value "errore"`, false},
		{"unknown errore", strings.Replace(base, `errore="nessuno"`, `errore="grave"`, 1), nil, "postacert/@errore", false},
		{"duplicate attribute", strings.Replace(base, `errore="nessuno"`, `errore="nessuno" Errore="altro"`, 1), nil, "twice", false},
		{"no intestazione", strings.Replace(base, "<intestazione>", "<intestazionex>", 1) + "", nil, "", false},
		{"no mittente", strings.Replace(base, "<mittente>a@pec.alfa.example</mittente>", "", 1), ErrMissing, "intestazione/mittente", false},
		{"empty mittente", strings.Replace(base, "<mittente>a@pec.alfa.example</mittente>", "<mittente> </mittente>", 1), ErrMissing, "intestazione/mittente", false},
		{"two mittente", strings.Replace(base, "<mittente>a@pec.alfa.example</mittente>", "<mittente>a@x</mittente><mittente>b@y</mittente>", 1), nil, "given 2 times", false},
		{"element inside mittente", strings.Replace(base, "<mittente>a@pec.alfa.example</mittente>", "<mittente><b>a</b></mittente>", 1), nil, "unexpected element <b>", false},
		{"no destinatari", strings.Replace(base, `<destinatari tipo="certificato">b@pec.beta.example</destinatari>`, "", 1), ErrMissing, "intestazione/destinatari", false},
		{"unknown destinatari tipo", strings.Replace(base, `tipo="certificato"`, `tipo="pec"`, 1), nil, "destinatari[1]/@tipo", false},
		{"no gestore-emittente", strings.Replace(base, "<gestore-emittente>Custode PEC S.p.A.</gestore-emittente>", "", 1), ErrMissing, "dati/gestore-emittente", false},
		{"no data", strings.Replace(base, "<data zona", "<datax zona", 1), nil, "", false},
		{"no zona", strings.Replace(base, ` zona="+0200"`, "", 1), ErrMissing, "dati/data/@zona", false},
		{"bad zona", strings.Replace(base, `"+0200"`, `"CEST"`, 1), nil, "dati/data/@zona", false},
		{"zona out of range", strings.Replace(base, `"+0200"`, `"+2500"`, 1), nil, "dati/data/@zona", false},
		{"no giorno", strings.Replace(base, "<giorno>02/07/2024</giorno>", "", 1), ErrMissing, "dati/data/giorno", false},
		{"giorno not a date", strings.Replace(base, "02/07/2024", "31/02/2024", 1), nil, "is not a date", false},
		{"giorno ISO", strings.Replace(base, "02/07/2024", "2024-07-02", 1), nil, "dd/mm/yyyy", false},
		{"giorno two-digit year", strings.Replace(base, "02/07/2024", "02/07/24", 1), nil, "dd/mm/yyyy", false},
		{"ora out of range", strings.Replace(base, "23:45:00", "24:00:00", 1), nil, "dati/data/ora", false},
		{"ora leap second", strings.Replace(base, "23:45:00", "23:59:60", 1), nil, "dati/data/ora", false},
		{"ora garbage", strings.Replace(base, "23:45:00", "+1:-2:3", 1), nil, "dati/data/ora", false},
		{"year before 1900", strings.Replace(base, "02/07/2024", "02/07/1850", 1), nil, "dati/data", false},
		{"no identificativo", strings.Replace(base, "<identificativo>id1@pec.custode.example</identificativo>", "", 1), ErrMissing, "dati/identificativo", false},
		{"ricevuta without tipo", strings.Replace(base, `<ricevuta tipo="completa" />`, "<ricevuta/>", 1), ErrMissing, "dati/ricevuta/@tipo", false},
		{"unknown ricevuta tipo", strings.Replace(base, `"completa"`, `"lunga"`, 1), nil, "dati/ricevuta/@tipo", false},
		{"markup declaration", strings.Replace(base, "<postacert ", "<!ELEMENT x ANY><postacert ", 1), nil, "refused", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.noSeed {
				writeSeed(t, "error-"+tt.name, []byte(tt.doc))
			}
			d, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", d)
			}
			t.Log(err)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "daticert: parse: ") {
				t.Errorf("error %q lacks the package context", err)
			}
		})
	}
}

// TestParseReportsField makes sure a FieldError from Parse can be inspected.
func TestParseReportsField(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(base, "<identificativo>id1@pec.custode.example</identificativo>", "", 1)))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "dati/identificativo" {
		t.Fatalf("Parse error %v: want a *FieldError for dati/identificativo", err)
	}
}

// TestParseAtLimit accepts a document of exactly MaxSize bytes.
func TestParseAtLimit(t *testing.T) {
	doc := base + strings.Repeat("\n", MaxSize-len(base))
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatalf("Parse of a %d-byte document: %v", len(doc), err)
	}
}
