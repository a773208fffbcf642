package export

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
)

// popplerTool returns the path of a poppler-utils tool; it skips the test
// when the tool is missing, unless CI=true, where it fails.
func popplerTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (Debian poppler-utils; scripts/install-test-deps.sh installs it)", name)
		}
		t.Skipf("%s is missing: install Debian's poppler-utils (scripts/install-test-deps.sh) to check the PDFs", name)
	}
	return p
}

// pdfPages renders pdf with pdftoppm (which must succeed, one image a
// page) and returns the text of each page as pdftotext -raw extracts it.
func pdfPages(t *testing.T, pdf []byte) []string {
	t.Helper()
	pdftotext, pdftoppm := popplerTool(t, "pdftotext"), popplerTool(t, "pdftoppm")
	dir := t.TempDir()
	in := filepath.Join(dir, "doc.pdf")
	if err := os.WriteFile(in, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pdftotext, "-raw", "-enc", "UTF-8", in, "-").CombinedOutput(); err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	} else {
		pages := strings.Split(strings.TrimSuffix(string(out), "\f"), "\f")
		if out, err := exec.Command(pdftoppm, "-r", "40", "-png", in, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
			t.Fatalf("pdftoppm: %v: %s", err, out)
		}
		images, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
		if len(images) != len(pages) {
			t.Fatalf("pdftoppm rendered %d pages, pdftotext read %d", len(images), len(pages))
		}
		return pages
	}
	return nil
}

var spaces = regexp.MustCompile(`\s+`)

func normalise(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

// checkPDFText checks that the PDF shows the document's text version:
// every page has the issuer at the top and "Pagina N di M" at the bottom,
// and the rest, page after page, is Text() but for whitespace.
func checkPDFText(t *testing.T, d *document, pdf []byte) []string {
	t.Helper()
	pages := pdfPages(t, pdf)
	var body []string
	for i, p := range pages {
		p = strings.TrimSpace(p)
		footer := fmt.Sprintf("Pagina %d di %d", i+1, len(pages))
		if !strings.HasSuffix(p, footer) {
			t.Fatalf("page %d does not end with %q: ...%q", i+1, footer, p[max(0, len(p)-80):])
		}
		p = strings.TrimSpace(strings.TrimSuffix(p, footer))
		if i > 0 {
			if !strings.HasPrefix(p, d.Issuer) {
				t.Fatalf("page %d does not start with the issuer %q: %q...", i+1, d.Issuer, p[:min(len(p), 80)])
			}
			p = strings.TrimPrefix(p, d.Issuer)
		}
		body = append(body, p)
	}
	got, want := normalise(strings.Join(body, " ")), normalise(d.Text())
	if got != want {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the PDF's text differs from the text version at byte %d:\n pdf: %q\ntext: %q", i, got[max(0, i-60):min(len(got), i+80)], want[max(0, i-60):min(len(want), i+80)])
	}
	return pages
}

// word is a word pdftotext -bbox places on a page, in points.
type word struct {
	Text                   string  `xml:",chardata"`
	XMin, YMin, XMax, YMax float64 `xml:"-"`
}

// pdfWords returns the words of each page with their boxes, and the
// page height, from pdftotext -bbox.
func pdfWords(t *testing.T, pdf []byte) ([][]word, float64) {
	t.Helper()
	pdftotext := popplerTool(t, "pdftotext")
	in := filepath.Join(t.TempDir(), "doc.pdf")
	if err := os.WriteFile(in, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pdftotext, "-bbox", "-enc", "UTF-8", in, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext -bbox: %v", err)
	}
	var doc struct {
		Pages []struct {
			Height string `xml:"height,attr"`
			Words  []struct {
				Text string `xml:",chardata"`
				XMin string `xml:"xMin,attr"`
				YMin string `xml:"yMin,attr"`
				XMax string `xml:"xMax,attr"`
				YMax string `xml:"yMax,attr"`
			} `xml:"word"`
		} `xml:"body>doc>page"`
	}
	dec := xml.NewDecoder(strings.NewReader(string(out)))
	dec.Strict = false
	dec.AutoClose = xml.HTMLAutoClose
	dec.Entity = xml.HTMLEntity
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("pdftotext -bbox output: %v", err)
	}
	f := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("pdftotext -bbox: coordinate %q", s)
		}
		return v
	}
	var pages [][]word
	height := 0.0
	for _, p := range doc.Pages {
		height = f(p.Height)
		var ws []word
		for _, w := range p.Words {
			ws = append(ws, word{Text: w.Text, XMin: f(w.XMin), YMin: f(w.YMin), XMax: f(w.XMax), YMax: f(w.YMax)})
		}
		pages = append(pages, ws)
	}
	return pages, height
}

// checkLayout checks that no two words of a page overlap and that only the
// footer's words are in the footer (below its rule) and only the issuer's
// in the header.
func checkLayout(t *testing.T, pdf []byte, issuer string) {
	t.Helper()
	const mm = 72 / 25.4
	pages, height := pdfWords(t, pdf)
	footerRule, headerRule := height-17*mm, 20*mm
	for i, ws := range pages {
		for j, w := range ws {
			switch {
			case w.YMin >= footerRule:
				if !regexp.MustCompile(`^(Pagina|di|\d+)$`).MatchString(w.Text) {
					t.Errorf("page %d: %q is in the footer (y %.1f-%.1f, rule at %.1f)", i+1, w.Text, w.YMin, w.YMax, footerRule)
				}
			case w.YMax > footerRule:
				t.Errorf("page %d: %q overlaps the footer rule (y %.1f-%.1f, rule at %.1f)", i+1, w.Text, w.YMin, w.YMax, footerRule)
			case w.YMax <= headerRule:
				if !strings.Contains(issuer, w.Text) {
					t.Errorf("page %d: %q is in the header", i+1, w.Text)
				}
			case w.YMin < headerRule:
				t.Errorf("page %d: %q overlaps the header rule", i+1, w.Text)
			}
			for _, v := range ws[j+1:] {
				if w.XMin < v.XMax-0.1 && v.XMin < w.XMax-0.1 && w.YMin < v.YMax-0.1 && v.YMin < w.YMax-0.1 {
					t.Errorf("page %d: %q and %q overlap", i+1, w.Text, v.Text)
				}
			}
		}
	}
}

func testEntry(seq uint64, t time.Time, subject string) *ledger.Entry {
	return &ledger.Entry{Seq: seq, Event: ledger.Event{
		Kind: ledger.KindAvvenutaConsegna, Identificativo: fmt.Sprintf("opec210.20261203201507.%05d.01.1.1@pec.alfa.test", seq),
		ClientMessageID: fmt.Sprintf("<%d@client.example>", seq), Time: t,
		Mittente: "mario.rossi@pec.alfa.test", Oggetto: subject, Gestore: "Beta PEC S.p.A.",
		Destinatari: []ledger.Recipient{{Address: "lucia.bianchi@pec.beta.test", Tipo: ledger.TipoCertificato}},
		SHA256:      make([]byte, 32), Related: []string{fmt.Sprintf("<consegna.%d@pec.beta.test>", seq)},
		Details: map[string]string{"destinatario": "lucia.bianchi@pec.beta.test", "tipo_ricevuta": "completa",
			"sha256_busta": strings.Repeat("ab", 32), "ricevuta_da": "gestore", "data_emissione": t.UTC().Format(time.RFC3339)},
	}}
}

// TestAttestationPDF: the attestation's PDF, rendered and read back by
// poppler, is its text version, accents and dashes intact; the gestore
// that keeps the log attests and the entry's gestore is named as issuer.
func TestAttestationPDF(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 12, 3, 19, 15, 7, 0, time.UTC)
	e := testEntry(12, when, "Perché la consegna è già avvenuta – ricorso n. 42/2026")
	b := &Bundle{Entry: e, Reproduction: true, Checkpoint: &ledger.Checkpoint{Size: 40, Time: when.Add(time.Minute)},
		First: &ledger.Checkpoint{Size: 13, Time: when.Add(3 * time.Second)}}
	d := attestation(b, "Alfa PEC S.p.A.", when.Add(time.Hour))
	text := d.Text()
	for _, want := range []string{
		"Il gestore di posta elettronica certificata Alfa PEC S.p.A., che tiene il log, attesta",
		"Ricevuta di avvenuta consegna) è stato emesso dal gestore Beta PEC S.p.A.",
		"Riferimento temporale: 03/12/2026 20:15:07 CET (UTC+01:00)",
		"Perché la consegna è già avvenuta – ricorso",
		"SHA-256 della busta di trasporto: " + strings.Repeat("ab", 32),
		"Tipo di ricevuta di consegna: completa",
		"Data di emissione: 03/12/2026 20:15:07 CET (UTC+01:00)",
		"Prima marca temporale della voce: 03/12/2026 20:15:10 CET (UTC+01:00) (checkpoint di 13 voci)",
	} {
		if !strings.Contains(normalise(text), want) {
			t.Errorf("attestation.txt lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"e'", "sha256_busta", "tipo_ricevuta", "avvenuta-consegna", "Il gestore di posta elettronica certificata Beta", "T19:15:07"} {
		if strings.Contains(text, bad) {
			t.Errorf("attestation.txt has %q:\n%s", bad, text)
		}
	}
	pdf, err := d.PDF(when)
	if err != nil {
		t.Fatal(err)
	}
	pages := checkPDFText(t, d, pdf)
	if all := strings.Join(pages, ""); !strings.Contains(all, "è già avvenuta – ricorso") {
		t.Errorf("the PDF's text lacks the accents and the dash: %q", all)
	}
	if !strings.HasPrefix(strings.TrimSpace(pages[0]), "Alfa PEC S.p.A.") {
		t.Errorf("the PDF does not start with the gestore's name: %q", pages[0][:min(80, len(pages[0]))])
	}
	checkLayout(t, pdf, d.Issuer)
}

// TestExtractPDF: an extract of many entries, some with long subjects,
// runs over several pages: its text is the text version, no entry breaks
// across pages or reaches the footer, nothing overlaps.
func TestExtractPDF(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	var entries []*ledger.Entry
	for i := range 30 {
		subject := fmt.Sprintf("Pratica %d – è urgente", i)
		if i%7 == 3 {
			subject = strings.Repeat("Oggetto molto lungo, perché così la riga va a capo più volte – ", 6)
		}
		entries = append(entries, testEntry(uint64(100+i), start.Add(time.Duration(i)*time.Hour), subject))
	}
	cp := &ledger.Checkpoint{Size: 200, Time: start.Add(40 * time.Hour)}
	title := fmt.Sprintf("Estratto del log della casella mario.rossi@pec.alfa.test, dal %s al %s", FormatTime(start), FormatTime(start.Add(48*time.Hour)))
	d := extractDocument("Alfa PEC S.p.A.", title, entries, cp)
	pdf, err := d.PDF(start)
	if err != nil {
		t.Fatal(err)
	}
	pages := checkPDFText(t, d, pdf)
	if len(pages) < 3 {
		t.Fatalf("%d pages: the test wants entries over several pages", len(pages))
	}
	if !strings.Contains(d.Text(), "01/07/2026 10:00:00 CEST (UTC+02:00) – Ricevuta di avvenuta consegna") {
		t.Errorf("the extract's headings are not Rome times and kind names:\n%s", d.Text()[:600])
	}
	// Each entry, from its heading to its last row, is on one page.
	for _, e := range entries {
		heading := normalise(FormatTime(e.Time))
		last := normalise("Numero nel log: " + fmt.Sprint(e.Seq))
		found := false
		for _, p := range pages {
			p = normalise(p)
			if i := strings.Index(p, heading); i >= 0 {
				found = true
				if !strings.Contains(p[i:], last) {
					t.Errorf("entry %d starts on a page and ends on another", e.Seq)
				}
			}
		}
		if !found {
			t.Errorf("entry %d is not in the PDF", e.Seq)
		}
	}
	checkLayout(t, pdf, d.Issuer)
}

// TestPDFHostileText: text the Go fonts cannot show (CJK, emoji), control
// characters, invalid UTF-8 and words longer than a column make a PDF, not
// an error or a panic, and keep Info and XMP metadata in agreement.
func TestPDFHostileText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"日本語の件名 😀 \u202e rovesciato",
		"a\x00b\x1bc\td\r\ne",
		"\xff\xfe non UTF-8",
		strings.Repeat("x", 2000),
		strings.Repeat("parola ", 3000),
		"",
	} {
		d := &document{Issuer: s, Title: s, Blocks: []block{{Heading: s, Text: s, Rows: [][2]string{{s, s}, {"Oggetto", s}}}}}
		pdf, err := d.PDF(time.Unix(0, 0))
		if err != nil || len(pdf) == 0 {
			t.Errorf("%.20q: %v", s, err)
			continue
		}
		checkPDFA(t, pdf)
	}
}
