package export

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/evidence"
)

// TimeLayout is how the documents of a bundle or an extract write an
// instant: in Europe/Rome, with the zone's abbreviation and its offset
// from UTC, e.g. "03/12/2026 20:15:07 CET (UTC+01:00)".
const TimeLayout = "02/01/2006 15:04:05 MST (UTC-07:00)"

// FormatTime writes t as the documents do (TimeLayout, Europe/Rome).
func FormatTime(t time.Time) string { return t.In(rome()).Format(TimeLayout) }

// KindName returns the Italian name of what a ledger entry of kind k
// records, as a titolare or a judge reads it ("Ricevuta di avvenuta
// consegna"); details, which may be nil, refine it (a virus, the form of
// a ricevuta di consegna). An unknown kind is returned as it is.
func KindName(k ledger.Kind, details map[string]string) string {
	virus := details["errore"] == "virus"
	switch k {
	case ledger.KindAccettazione:
		return "Ricevuta di accettazione"
	case ledger.KindNonAccettazione:
		if virus {
			return "Avviso di non accettazione per virus informatico"
		}
		return "Avviso di non accettazione"
	case ledger.KindPostaCertificata:
		return "Busta di trasporto"
	case ledger.KindPresaInCarico:
		return "Ricevuta di presa in carico"
	case ledger.KindAvvenutaConsegna:
		switch details["tipo_ricevuta"] {
		case "breve":
			return "Ricevuta breve di avvenuta consegna"
		case "sintetica":
			return "Ricevuta sintetica di avvenuta consegna"
		}
		return "Ricevuta di avvenuta consegna"
	case ledger.KindErroreConsegna:
		if virus {
			return "Avviso di mancata consegna per virus informatico"
		}
		return "Avviso di mancata consegna"
	case ledger.KindPreavvisoErroreConsegna12:
		return "Avviso di mancata consegna per superamento dei tempi massimi (12 ore)"
	case ledger.KindPreavvisoErroreConsegna24:
		return "Avviso di mancata consegna per superamento dei tempi massimi (24 ore)"
	case ledger.KindRilevazioneVirus:
		return "Avviso di rilevazione virus informatico"
	case ledger.KindBustaAnomalia:
		return "Busta di anomalia"
	case ledger.KindCheckpoint:
		return "Checkpoint del log"
	case ledger.KindQuery:
		return "Consultazione del log"
	case ledger.KindExport:
		return "Esportazione di evidenze"
	case ledger.KindPolicyChange:
		return "Modifica delle regole di conservazione"
	case ledger.KindLegalHold:
		return "Blocco per motivi legali"
	case ledger.KindPurge:
		return "Cancellazione alla scadenza della conservazione"
	case ledger.KindOutage:
		return "Disservizio"
	}
	return string(k)
}

// detailNames are the Italian names of the Details keys the gestore writes.
var detailNames = map[string]string{
	"destinatario":     "Destinatario della consegna",
	"errore":           "Errore",
	"errore_esteso":    "Descrizione dell'errore",
	"motivo":           "Motivo",
	"virus":            "Virus rilevato",
	"ricezione":        "Destinatari presi in carico",
	"gestore_mittente": "Gestore del mittente",
	"sha256_busta":     "SHA-256 della busta di trasporto",
	"tipo_ricevuta":    "Tipo di ricevuta di consegna",
	"ricevuta_da":      "Provenienza",
	"data_emissione":   "Data di emissione",
	"oggetto_troncato": "Oggetto troncato nel log",
}

// detailValue writes the value of a Details key for a reader.
func detailValue(key, v string) string {
	switch key {
	case "errore":
		switch v {
		case "no-dest":
			return "destinatario non valido (no-dest)"
		case "no-dominio":
			return "dominio non valido (no-dominio)"
		case "virus":
			return "virus informatico (virus)"
		case "altro":
			return "altro errore (altro)"
		}
	case "ricevuta_da":
		if v == "gestore" {
			return "ricevuta dal gestore che l'ha emessa"
		}
	case "data_emissione":
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return FormatTime(t)
		}
	case "oggetto_troncato":
		if v == "true" {
			return "sì"
		}
	}
	return v
}

// detailName is the Italian name of a Details key; an unknown key is
// written with spaces for underscores and a capital first letter.
func detailName(key string) string {
	if n, ok := detailNames[key]; ok {
		return n
	}
	n := strings.ReplaceAll(key, "_", " ")
	if r, size := utf8.DecodeRuneInString(n); size > 0 {
		n = strings.ToUpper(string(r)) + n[size:]
	}
	return n
}

// entryRows are the facts of an entry as label and value, empty values
// left out: the RFC 6109 §2.3 fields, then its details.
func entryRows(e *ledger.Entry) [][2]string {
	var dest []string
	for _, d := range e.Destinatari {
		dest = append(dest, d.Address+" ("+string(d.Tipo)+")")
	}
	all := [][2]string{
		{"Tipo", KindName(e.Kind, e.Details)},
		{"Identificativo", e.Identificativo},
		{"Message-ID del client", e.ClientMessageID},
		{"Riferimento temporale", FormatTime(e.Time)},
		{"Mittente", e.Mittente},
		{"Destinatari", strings.Join(dest, ", ")},
		{"Oggetto", e.Oggetto},
		{"Gestore che ha emesso il messaggio", e.Gestore},
		{"Messaggi collegati", relatedList(e.Related)},
		{"SHA-256 del messaggio firmato", hex.EncodeToString(e.SHA256)},
		{"Numero nel log", fmt.Sprint(e.Seq)},
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		all = append(all, [2]string{detailName(k), detailValue(k, e.Details[k])})
	}
	var out [][2]string
	for _, r := range all {
		if strings.TrimSpace(r[1]) != "" {
			out = append(out, r)
		}
	}
	return out
}

// gestoreName is the name of the gestore whose certificate signs: its
// organisation, else its common name.
func gestoreName(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	if len(c.Subject.Organization) > 0 && c.Subject.Organization[0] != "" {
		return c.Subject.Organization[0]
	}
	return c.Subject.CommonName
}

// document is what a PDF of a bundle or an extract shows, and its text
// version: the gestore's name at the top of every page, a title, then
// paragraphs, headings and tables of facts.
type document struct {
	// Issuer is the gestore that issues the document.
	Issuer string
	// Title is the document's title.
	Title string
	// Blocks are its content, in order.
	Blocks []block
}

// block is a part of a document: a heading, a paragraph, a table, or
// these in that order. A block is never split across pages unless it is
// taller than a page.
type block struct {
	Heading string
	Text    string
	Rows    [][2]string
}

// textWidth is where the text version wraps paragraphs.
const textWidth = 78

// Text is the document as plain UTF-8 text: what the PDF shows, in the
// same order, without page headers and footers.
func (d *document) Text() string {
	var s strings.Builder
	s.WriteString(d.Issuer + "\n")
	s.WriteString(d.Title + "\n")
	for _, b := range d.Blocks {
		s.WriteString("\n")
		if b.Heading != "" {
			s.WriteString(b.Heading + "\n")
		}
		if b.Text != "" {
			for _, para := range strings.Split(b.Text, "\n") {
				for _, l := range wrap(para, textWidth) {
					s.WriteString(l + "\n")
				}
			}
		}
		for _, r := range b.Rows {
			lines := strings.Split(r[1], "\n")
			s.WriteString(r[0] + ": " + lines[0] + "\n")
			for _, l := range lines[1:] {
				s.WriteString("    " + l + "\n")
			}
		}
	}
	return s.String()
}

// wrap splits s at spaces into lines of at most width runes; a word
// longer than width has a line of its own.
func wrap(s string, width int) []string {
	words := strings.Fields(s)
	if len(words) == 0 {
		return []string{""}
	}
	var lines []string
	cur := words[0]
	for _, w := range words[1:] {
		if utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) > width {
			lines = append(lines, cur)
			cur = w
			continue
		}
		cur += " " + w
	}
	return append(lines, cur)
}

// relatedList writes the related identificativi of an entry in one form,
// without angle brackets, each once: older entries may hold them
// bracketed (evidence.NormalizeRelated).
func relatedList(related []string) string {
	var out []string
	for _, r := range related {
		if r = evidence.NormalizeRelated(r); r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return strings.Join(out, ", ")
}
