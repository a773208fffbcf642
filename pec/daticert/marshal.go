package daticert

import (
	"bytes"
	"fmt"
	"strings"
)

// Marshal returns d as a daticert.xml document. The document is UTF-8, valid
// against the DTD of RFC 6109 §4.4 with its elements in the order the DTD
// requires, and laid out as the gestori in service write it: an XML
// declaration, no DOCTYPE, four spaces of indentation, one element per line,
// "<ricevuta tipo=... />" and a final newline. The riferimento temporale is
// written in Europe/Rome with the zona of that instant (+0100 or +0200).
//
// Marshal validates d first (see [Daticert.Validate]) and writes nothing
// for an invalid model: the error wraps a [*FieldError] naming the field.
// An empty Errore is written as "nessuno"; empty optional fields are left
// out, except risposte, which the DTD requires and which is then written
// empty.
func Marshal(d *Daticert) ([]byte, error) {
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("daticert: marshal: %w", err)
	}
	local, err := romeDate(d.Time)
	if err != nil { // unreachable after validate, kept for safety
		return nil, fmt.Errorf("daticert: marshal: %w", err)
	}
	errore := d.Errore
	if errore == "" {
		errore = ErroreNessuno
	}
	_, off := local.Zone()

	var b bytes.Buffer
	b.Grow(1024 + 96*len(d.Destinatari) + 64*len(d.Ricezione))
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, "<postacert tipo=\"%s\" errore=\"%s\">\n", d.Tipo, errore)
	b.WriteString("    <intestazione>\n")
	element(&b, 2, "mittente", d.Mittente)
	for _, r := range d.Destinatari {
		fmt.Fprintf(&b, "        <destinatari tipo=\"%s\">", r.Tipo)
		escape(&b, r.Address)
		b.WriteString("</destinatari>\n")
	}
	element(&b, 2, "risposte", d.ReplyTo)
	if d.Oggetto != "" {
		element(&b, 2, "oggetto", d.Oggetto)
	}
	b.WriteString("    </intestazione>\n")
	b.WriteString("    <dati>\n")
	element(&b, 2, "gestore-emittente", d.GestoreEmittente)
	fmt.Fprintf(&b, "        <data zona=\"%s\">\n", formatZona(off))
	element(&b, 3, "giorno", local.Format("02/01/2006"))
	element(&b, 3, "ora", local.Format("15:04:05"))
	b.WriteString("        </data>\n")
	element(&b, 2, "identificativo", d.Identificativo)
	if d.MessageID != "" {
		element(&b, 2, "msgid", d.MessageID)
	}
	if d.Receipt != "" {
		fmt.Fprintf(&b, "        <ricevuta tipo=\"%s\" />\n", d.Receipt)
	}
	if d.Consegna != "" {
		element(&b, 2, "consegna", d.Consegna)
	}
	for _, r := range d.Ricezione {
		element(&b, 2, "ricezione", r)
	}
	if d.ErroreEsteso != "" {
		element(&b, 2, "errore-esteso", d.ErroreEsteso)
	}
	b.WriteString("    </dati>\n")
	b.WriteString("</postacert>\n")
	return b.Bytes(), nil
}

// element writes <name>text</name> on a line of its own, indented by depth
// levels of four spaces.
func element(b *bytes.Buffer, depth int, name, text string) {
	b.WriteString(strings.Repeat("    ", depth))
	b.WriteByte('<')
	b.WriteString(name)
	b.WriteByte('>')
	escape(b, text)
	b.WriteString("</")
	b.WriteString(name)
	b.WriteString(">\n")
}

// escape writes s as XML character data. It escapes the three markup
// characters, as gestori do for the msgid's angle brackets, and carriage
// returns, which a parser would otherwise fold into line feeds. The caller
// has checked that s holds only XML characters.
func escape(b *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}
