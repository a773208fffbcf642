package pec

import (
	"html"
	"strings"
	"time"

	"github.com/custode/custode/pec/daticert"
)

// This file writes the human-readable text of every message: the Italian
// wording follows the gestori in service where PEC.md records it (busta di
// trasporto, ricevuta di accettazione, ricevuta di avvenuta consegna, avviso
// di mancata consegna) and the rules' descriptions elsewhere. The text is
// for people; programs read daticert.xml ("Parsing MUST be done on the XML
// part only", RFC 6109 §4.3).

// text is the human-readable part of a message: a title and paragraphs of
// lines.
type text struct {
	title      string
	paragraphs [][]string
}

// plain returns t as text/plain content, CRLF line endings.
func (t text) plain() string {
	var b strings.Builder
	for i, p := range t.paragraphs {
		if i > 0 {
			b.WriteString("\r\n")
		}
		for _, l := range p {
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// html returns t as a self-contained text/html document: no external
// reference, no active content (RFC 6109 §4.3).
func (t text) html() string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\r\n<html lang=\"it\">\r\n<head>\r\n<meta charset=\"utf-8\">\r\n")
	b.WriteString("<title>" + html.EscapeString(t.title) + "</title>\r\n</head>\r\n<body>\r\n")
	for _, p := range t.paragraphs {
		b.WriteString("<p>")
		for i, l := range p {
			if i > 0 {
				b.WriteString("<br>\r\n")
			}
			b.WriteString(html.EscapeString(l))
		}
		b.WriteString("</p>\r\n")
	}
	b.WriteString("</body>\r\n</html>\r\n")
	return b.String()
}

// when writes t as the texts of real ricevute do: "14/11/2014 alle ore
// 18:26:32 (+0100)", in Europe/Rome with the zona of that instant.
func (g *Gestore) when(t time.Time) string {
	r := t.In(g.rome)
	return r.Format("02/01/2006") + " alle ore " + r.Format("15:04:05") + " (" + r.Format("-0700") + ")"
}

// tipoLabel describes a recipient's tipo as Aruba's ricevute do.
func tipoLabel(t daticert.TipoDestinatario) string {
	if t == daticert.DestinatarioEsterno {
		return `("posta ordinaria")`
	}
	return `("posta certificata")`
}

// destinatariLines lists the destinatari, one a line, with their tipo when
// withTipo.
func destinatariLines(ds []daticert.Destinatario, withTipo bool) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		if withTipo {
			out = append(out, d.Address+" "+tipoLabel(d.Tipo))
		} else {
			out = append(out, d.Address)
		}
	}
	return out
}

// joinDestinatari lists the destinatari on one line with their tipo.
func joinDestinatari(ds []daticert.Destinatario) string {
	return strings.Join(destinatariLines(ds, true), ", ")
}

const (
	lineDaticert = "L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione"
	lineOriginal = `Il messaggio originale è incluso in allegato, per aprirlo cliccare sul file "postacert.eml" (nella webmail o in alcuni client di posta l'allegato potrebbe avere come nome l'oggetto del messaggio originale).`
)

// quoted returns s in double quotes, as the texts cite subjects and
// addresses.
func quoted(s string) string { return `"` + s + `"` }

func (g *Gestore) textAccettazione(tx *Transaction) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"ed indirizzato a:",
	}
	p = append(p, destinatariLines(tx.Destinatari, true)...)
	p = append(p, "è stato accettato dal sistema ed inoltrato.",
		"Identificativo del messaggio: "+tx.Identificativo, lineDaticert)
	return text{
		title:      "Ricevuta di accettazione",
		paragraphs: [][]string{{"-- Ricevuta di accettazione del messaggio indirizzato a " + joinDestinatari(tx.Destinatari) + " --"}, p},
	}
}

func (g *Gestore) textNonAccettazione(tx *Transaction, virus bool, reason string) text {
	title, cause := "Avviso di non accettazione", "è stato rilevato un problema che ne impedisce l'accettazione: "+reason
	if virus {
		title, cause = "Avviso di non accettazione per virus informatico", "è stato rilevato un virus informatico: "+reason
	}
	p := []string{
		"Il giorno " + g.when(tx.Time) + " nel messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"ed indirizzato a:",
	}
	p = append(p, destinatariLines(tx.Destinatari, true)...)
	p = append(p, cause+".", "Il messaggio non è stato accettato dal sistema e non è stato inoltrato.",
		"Identificativo del messaggio: "+tx.Identificativo, lineDaticert)
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textBusta(tx *Transaction) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " è stato inviato dal mittente " + quoted(tx.Mittente),
		"e indirizzato a:",
	}
	p = append(p, destinatariLines(tx.Destinatari, false)...)
	p = append(p, lineOriginal, lineDaticert,
		"L'identificativo univoco di questo messaggio è: "+tx.Identificativo)
	return text{
		title:      "Messaggio di Posta Certificata",
		paragraphs: [][]string{{"--Questo è un Messaggio di Posta Certificata--"}, p},
	}
}

func (g *Gestore) textPreavviso(tx *Transaction, recipient string, after Timeout) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"e indirizzato a " + quoted(recipient),
	}
	if after == Timeout24h {
		p = append(p, "non è stato consegnato entro 24 ore dal suo invio.",
			"La transazione è da considerarsi conclusa con esito negativo.")
	} else {
		p = append(p, "non è stato consegnato nelle prime 12 ore dal suo invio.",
			"Il sistema provvederà ad inviare un ulteriore avviso di mancata consegna se nelle successive 12 ore non riceverà conferma della consegna.")
	}
	p = append(p, "Identificativo del messaggio: "+tx.Identificativo, lineDaticert)
	const title = "Avviso di mancata consegna per superamento dei tempi massimi"
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textPresaInCarico(tx *Transaction, ricezione []string) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"è stato preso in carico dal gestore " + g.name + " per i destinatari:",
	}
	p = append(p, ricezione...)
	p = append(p, "Identificativo del messaggio: "+tx.Identificativo, lineDaticert)
	const title = "Ricevuta di presa in carico"
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textAnomalia(subject, mittente string, at time.Time, reason string) text {
	p := []string{
		"Il giorno " + g.when(at) + " è stato ricevuto il messaggio con Oggetto",
		quoted(subject) + " inviato da " + quoted(mittente) + ".",
		"Tali dati non sono stati certificati per il seguente errore:",
		reason,
		`Il messaggio originale è incluso in allegato (file "postacert.eml").`,
	}
	const title = "Anomalia nel messaggio"
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textRilevazioneVirus(tx *Transaction, recipient, virus string) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " nel messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"e indirizzato a " + quoted(recipient),
		"è stato rilevato un virus informatico: " + virus + ".",
		"Il messaggio non è stato consegnato al destinatario.",
		"Identificativo del messaggio: " + tx.Identificativo, lineDaticert,
	}
	const title = "Avviso di rilevazione virus informatico"
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textMancataConsegnaVirus(tx *Transaction, recipient, virus string) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"e indirizzato a " + quoted(recipient),
		"non è stato consegnato perché il gestore del destinatario vi ha rilevato un virus informatico: " + virus + ".",
		"Identificativo del messaggio: " + tx.Identificativo, lineDaticert,
	}
	const title = "Avviso di mancata consegna per virus informatico"
	return text{title: title, paragraphs: [][]string{{"-- " + title + " --"}, p}}
}

func (g *Gestore) textConsegna(tx *Transaction, recipient string, form daticert.ReceiptType) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " il messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"ed indirizzato a " + quoted(recipient),
		"è stato correttamente consegnato al destinatario.",
		"Identificativo del messaggio: " + tx.Identificativo,
	}
	switch form {
	case daticert.ReceiptCompleta:
		p = append(p, lineOriginal)
	case daticert.ReceiptBreve:
		p = append(p, `Il messaggio originale è incluso in allegato (file "postacert.eml"), con ciascuno dei suoi allegati sostituito dalla sua impronta SHA-1 (file con estensione ".hash").`,
			`L'impronta è calcolata, come prescrivono le regole tecniche, sul contenuto dell'allegato così come è stato trasmesso: il testo codificato (base64 o quoted-printable) del messaggio originale, con le righe terminate da CR LF e senza l'a capo che precede il separatore MIME (boundary) successivo; non è lo SHA-1 del file decodificato (quello che dà sha1sum sul file salvato), che è diverso.`)
	}
	p = append(p, lineDaticert)
	return text{
		title:      "Ricevuta di avvenuta consegna",
		paragraphs: [][]string{{"-- Ricevuta di avvenuta consegna del messaggio indirizzato a " + recipient + ` "posta certificata" --`}, p},
	}
}

func (g *Gestore) textMancataConsegna(tx *Transaction, recipient, detail string) text {
	p := []string{
		"Il giorno " + g.when(tx.Time) + " nel messaggio con Oggetto",
		quoted(tx.Subject) + " inviato da " + quoted(tx.Mittente),
		"e indirizzato a " + quoted(recipient),
		"è stato rilevato il seguente errore: " + detail,
		"Il messaggio è stato rifiutato dal sistema.",
		"Identificativo del messaggio: " + tx.Identificativo, lineDaticert,
	}
	return text{title: "Avviso di mancata consegna", paragraphs: [][]string{{"--Avviso di mancata consegna del messaggio--"}, p}}
}
