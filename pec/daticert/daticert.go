package daticert

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custode/custode/pec/rome"
)

// Tipo is the typology of a PEC message: the tipo attribute of the postacert
// element. Its values are the X-Ricevuta and X-Trasporto header values of
// RFC 6109 §3.
type Tipo string

// The tipo values the DTD allows.
const (
	TipoAccettazione            Tipo = "accettazione"
	TipoNonAccettazione         Tipo = "non-accettazione"
	TipoPresaInCarico           Tipo = "presa-in-carico"
	TipoAvvenutaConsegna        Tipo = "avvenuta-consegna"
	TipoPostaCertificata        Tipo = "posta-certificata"
	TipoErroreConsegna          Tipo = "errore-consegna"
	TipoPreavvisoErroreConsegna Tipo = "preavviso-errore-consegna"
	TipoRilevazioneVirus        Tipo = "rilevazione-virus"
)

// Valid reports whether t is one of the tipo values the DTD allows.
func (t Tipo) Valid() bool {
	switch t {
	case TipoAccettazione, TipoNonAccettazione, TipoPresaInCarico,
		TipoAvvenutaConsegna, TipoPostaCertificata, TipoErroreConsegna,
		TipoPreavvisoErroreConsegna, TipoRilevazioneVirus:
		return true
	}
	return false
}

// Errore is the error class of a PEC message: the errore attribute of the
// postacert element.
type Errore string

// The errore values the DTD allows. The DTD's comments pair ErroreNoDest and
// ErroreNoDominio with [TipoErroreConsegna], and ErroreVirus with
// [TipoErroreConsegna] and [TipoNonAccettazione]; the DTD itself does not
// enforce the pairing and neither does this package.
const (
	ErroreNessuno   Errore = "nessuno"    // no error; the DTD default
	ErroreNoDest    Errore = "no-dest"    // wrong recipient
	ErroreNoDominio Errore = "no-dominio" // wrong domain
	ErroreVirus     Errore = "virus"      // virus
	ErroreAltro     Errore = "altro"      // any other error
)

// Valid reports whether e is one of the errore values the DTD allows.
func (e Errore) Valid() bool {
	switch e {
	case ErroreNessuno, ErroreNoDest, ErroreNoDominio, ErroreVirus, ErroreAltro:
		return true
	}
	return false
}

// TipoDestinatario says whether a recipient's domain is a PEC domain: the
// tipo attribute of a destinatari element. The punto di accesso decides it by
// looking the domain up among the managedDomains of the indice dei gestori.
type TipoDestinatario string

// The recipient tipo values the DTD allows.
const (
	DestinatarioCertificato TipoDestinatario = "certificato" // a PEC mailbox; the DTD default
	DestinatarioEsterno     TipoDestinatario = "esterno"     // an ordinary, non-PEC mailbox
)

// Valid reports whether t is one of the recipient tipo values the DTD allows.
func (t TipoDestinatario) Valid() bool {
	return t == DestinatarioCertificato || t == DestinatarioEsterno
}

// ReceiptType is the kind of ricevuta di avvenuta consegna the sender asked
// for (X-TipoRicevuta): the tipo attribute of the ricevuta element.
type ReceiptType string

// The ricevuta tipo values the DTD allows.
const (
	ReceiptCompleta  ReceiptType = "completa"
	ReceiptBreve     ReceiptType = "breve"
	ReceiptSintetica ReceiptType = "sintetica"
)

// Valid reports whether r is one of the ricevuta tipo values the DTD allows.
func (r ReceiptType) Valid() bool {
	return r == ReceiptCompleta || r == ReceiptBreve || r == ReceiptSintetica
}

// Destinatario is one recipient of the original message, from its To: or
// Cc: field.
type Destinatario struct {
	Address string
	Tipo    TipoDestinatario
}

// Daticert is the dati di certificazione of one PEC message. Its fields
// follow the DTD's elements; the comment of each field names the element or
// attribute it stands for. A field that holds a string is empty when the
// optional element it stands for is absent.
type Daticert struct {
	Tipo   Tipo   // postacert/@tipo; mandatory
	Errore Errore // postacert/@errore; empty means ErroreNessuno

	// Header of the original message (intestazione).
	Mittente    string         // intestazione/mittente; mandatory
	Destinatari []Destinatario // intestazione/destinatari; at least one, each with its Tipo
	ReplyTo     string         // intestazione/risposte: the Reply-To: value; may be empty
	Oggetto     string         // intestazione/oggetto: the Subject: value, kept verbatim

	// Data of the PEC message (dati).
	GestoreEmittente string // dati/gestore-emittente; mandatory

	// Time is the riferimento temporale (dati/data). Marshal writes it in
	// Europe/Rome as giorno dd/mm/yyyy, ora hh:mm:ss and zona +0100 or +0200;
	// Parse returns it in a fixed zone with the offset the document states.
	// Mandatory; it must fall in the years 1900 to 9999 in Europe/Rome.
	Time time.Time

	Identificativo string      // dati/identificativo: the PEC msgid; mandatory
	MessageID      string      // dati/msgid: the original client Message-ID, angle brackets included as gestori write it
	Receipt        ReceiptType // dati/ricevuta/@tipo; empty when there is no ricevuta element
	Consegna       string      // dati/consegna: recipient of the delivery (attempt)
	Ricezione      []string    // dati/ricezione: recipients a presa in carico covers
	ErroreEsteso   string      // dati/errore-esteso: short description of the error
}

// A FieldError reports a field of a [Daticert] that is missing or malformed.
// Field names the element or attribute, as a path from the postacert
// element in the DTD's own names (for example "intestazione/mittente" or
// "intestazione/destinatari[2]/@tipo").
type FieldError struct {
	Field string
	Err   error // ErrMissing for a mandatory field left empty
}

// Error returns the field and what is wrong with it.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns e.Err, so that errors.Is(err, ErrMissing) holds for a
// missing mandatory field.
func (e *FieldError) Unwrap() error { return e.Err }

// ErrMissing is the [FieldError.Err] of a mandatory field left empty.
var ErrMissing = errors.New("missing")

func fieldErrorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate reports whether d can be marshalled into a document valid against
// the DTD. The error, if any, wraps a [*FieldError] naming the first field at
// fault.
func (d *Daticert) Validate() error {
	if err := d.validate(); err != nil {
		return fmt.Errorf("daticert: invalid: %w", err)
	}
	return nil
}

func (d *Daticert) validate() error {
	if d == nil {
		return missing("postacert")
	}
	if d.Tipo == "" {
		return missing("postacert/@tipo")
	}
	if !d.Tipo.Valid() {
		return fieldErrorf("postacert/@tipo", "unknown value %q", string(d.Tipo))
	}
	if d.Errore != "" && !d.Errore.Valid() {
		return fieldErrorf("postacert/@errore", "unknown value %q", string(d.Errore))
	}
	if err := checkToken("intestazione/mittente", d.Mittente, true); err != nil {
		return err
	}
	if len(d.Destinatari) == 0 {
		return missing("intestazione/destinatari")
	}
	for i, r := range d.Destinatari {
		field := fmt.Sprintf("intestazione/destinatari[%d]", i+1)
		if err := checkToken(field, r.Address, true); err != nil {
			return err
		}
		if r.Tipo == "" {
			return missing(field + "/@tipo")
		}
		if !r.Tipo.Valid() {
			return fieldErrorf(field+"/@tipo", "unknown value %q", string(r.Tipo))
		}
	}
	if err := checkToken("intestazione/risposte", d.ReplyTo, false); err != nil {
		return err
	}
	if err := checkText("intestazione/oggetto", d.Oggetto); err != nil {
		return err
	}
	if err := checkToken("dati/gestore-emittente", d.GestoreEmittente, true); err != nil {
		return err
	}
	if _, err := romeDate(d.Time); err != nil {
		return err
	}
	if err := checkToken("dati/identificativo", d.Identificativo, true); err != nil {
		return err
	}
	if err := checkToken("dati/msgid", d.MessageID, false); err != nil {
		return err
	}
	if d.Receipt != "" && !d.Receipt.Valid() {
		return fieldErrorf("dati/ricevuta/@tipo", "unknown value %q", string(d.Receipt))
	}
	if err := checkToken("dati/consegna", d.Consegna, false); err != nil {
		return err
	}
	for i, r := range d.Ricezione {
		if err := checkToken(fmt.Sprintf("dati/ricezione[%d]", i+1), r, true); err != nil {
			return err
		}
	}
	return checkToken("dati/errore-esteso", d.ErroreEsteso, false)
}

func missing(field string) *FieldError {
	return &FieldError{Field: field, Err: ErrMissing}
}

// checkToken checks a value that Parse trims: it must not start or end with
// white space, so that it survives a Marshal and Parse round trip.
func checkToken(field, s string, mandatory bool) error {
	if s == "" {
		if mandatory {
			return missing(field)
		}
		return nil
	}
	if err := checkText(field, s); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return fieldErrorf(field, "leading or trailing white space")
	}
	return nil
}

// checkText checks that s is UTF-8 made only of characters XML 1.0 can carry.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fieldErrorf(field, "not valid UTF-8")
	}
	for _, r := range s {
		if !isXMLChar(r) {
			return fieldErrorf(field, "character %U is not allowed in XML", r)
		}
	}
	return nil
}

// isXMLChar reports whether r is a Char of XML 1.0 (fifth edition), §2.2.
func isXMLChar(r rune) bool {
	switch {
	case r == 0x09 || r == 0x0A || r == 0x0D:
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// romeLocation is Europe/Rome, loaded once by package rome.
var romeLocation = rome.Location

// Earliest and latest riferimento temporale Marshal can write: the format
// has four-digit years, and before 1893 Rome kept a local mean time whose
// offset is not a whole number of minutes.
const (
	minYear = 1900
	maxYear = 9999
)

// romeDate returns t in Europe/Rome, checking that it can be written as
// giorno, ora and zona.
func romeDate(t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Time{}, missing("dati/data")
	}
	rome, err := romeLocation()
	if err != nil {
		return time.Time{}, fieldErrorf("dati/data", "loading Europe/Rome: %w", err)
	}
	local := t.In(rome)
	if y := local.Year(); y < minYear || y > maxYear {
		return time.Time{}, fieldErrorf("dati/data", "year %d outside %d-%d", y, minYear, maxYear)
	}
	if _, off := local.Zone(); off%60 != 0 {
		return time.Time{}, fieldErrorf("dati/data", "Europe/Rome offset is not a whole number of minutes")
	}
	return local, nil
}

// formatZona writes a UTC offset in seconds as [+|-]hhmm.
func formatZona(off int) string {
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	off /= 60
	return fmt.Sprintf("%c%02d%02d", sign, off/60, off%60)
}
