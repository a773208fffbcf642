package pec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// This file builds the messages of RFC 6109 §3. Each one is a
// multipart/mixed entity (RFC 6109 §4.3): a multipart/alternative text part
// (text/plain and text/html, UTF-8, quoted-printable), daticert.xml
// (application/xml, base64) and, where the rules want it, the original
// message as postacert.eml (message/rfc822); then multipart/signed with the
// gestore's SHA-256 signature (pec/smime). The entity is deterministic for a
// given Transaction and msgid: its boundaries derive from the msgid.

// Accettazione builds the ricevuta di accettazione (RFC 6109 §3.1.4) the
// punto di accesso sends the mittente when it accepts the message.
func (g *Gestore) Accettazione(tx *Transaction) (*Built, error) {
	if err := g.checkTx(tx, false); err != nil {
		return nil, fmt.Errorf("pec: ricevuta di accettazione: %w", err)
	}
	dc := g.daticert(tx, daticert.TipoAccettazione, "")
	return g.notification(KindAccettazione, tx, tx.Mittente, nil, g.textAccettazione(tx), dc, nil)
}

// NonAccettazione builds the avviso di non accettazione per eccezioni
// formali (RFC 6109 §3.1.2) the punto di accesso sends the mittente when the
// message fails the formal checks; reason, in Italian, says which and is
// written in the text and as errore-esteso. The avviso never carries the
// original.
func (g *Gestore) NonAccettazione(tx *Transaction, reason string) (*Built, error) {
	reason = oneLine(reason)
	if err := g.checkTx(tx, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di non accettazione: %w", err)
	}
	if reason == "" {
		return nil, errors.New("pec: avviso di non accettazione: the reason is empty")
	}
	dc := g.daticert(tx, daticert.TipoNonAccettazione, daticert.ErroreAltro)
	dc.ErroreEsteso = reason
	return g.notification(KindNonAccettazione, tx, tx.Mittente, nil, g.textNonAccettazione(tx, false, reason), dc, nil)
}

// NonAccettazioneVirus builds the avviso di non accettazione per virus
// informatico (RFC 6109 §3.1.3) the punto di accesso sends the mittente
// when it finds a virus in the message; virus names it. The avviso carries
// X-VerificaSicurezza: errore and never the original.
func (g *Gestore) NonAccettazioneVirus(tx *Transaction, virus string) (*Built, error) {
	virus = oneLine(virus)
	if err := g.checkTx(tx, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di non accettazione per virus: %w", err)
	}
	if virus == "" {
		return nil, errors.New("pec: avviso di non accettazione per virus: the virus is not named")
	}
	dc := g.daticert(tx, daticert.TipoNonAccettazione, daticert.ErroreVirus)
	dc.ErroreEsteso = virus
	extra := []smime.Field{{Name: HeaderVerificaSicurezza, Value: "errore"}}
	return g.notification(KindNonAccettazioneVirus, tx, tx.Mittente, extra, g.textNonAccettazione(tx, true, virus), dc, nil)
}

// BustaTrasporto builds the busta di trasporto (RFC 6109 §3.1.5) that
// carries the original message to its destinatari: From "Per conto di:
// [mittente]" <posta-certificata@domain>, Message-ID the identificativo,
// the Received, Return-Path, To, Cc and Reply-To fields of the original
// (Reply-To set to the mittente when the original has none), X-TipoRicevuta,
// and the original, unmodified, as postacert.eml.
func (g *Gestore) BustaTrasporto(tx *Transaction) (*Built, error) {
	if err := g.checkTx(tx, true); err != nil {
		return nil, fmt.Errorf("pec: busta di trasporto: %w", err)
	}
	oh, _, err := splitHeader(tx.Original)
	if err != nil {
		return nil, fmt.Errorf("pec: busta di trasporto: the original's header cannot be read: %w", err)
	}
	from := onBehalfOf(tx.Mittente, g.Address())
	hdr := inherit(nil, oh, "Received", "Return-Path")
	hdr = append(hdr,
		smime.Field{Name: "Date", Value: g.dateValue(tx.Time)},
		subjectField(KindBustaTrasporto.SubjectPrefix(), tx.Subject),
		smime.Field{Name: "From", Value: from},
		smime.Field{Name: "Sender", Value: from},
	)
	hdr = inherit(hdr, oh, "To", "Cc", "Reply-To")
	if oh.value("Reply-To") == "" {
		hdr = append(hdr, smime.Field{Name: "Reply-To", Value: tx.Mittente})
	}
	hdr = append(hdr,
		smime.Field{Name: "Message-ID", Value: "<" + tx.Identificativo + ">"},
		smime.Field{Name: HeaderRiferimentoMessageID, Value: tx.MessageID},
		smime.Field{Name: HeaderTrasporto, Value: rules(KindBustaTrasporto).trasporto},
		smime.Field{Name: HeaderTipoRicevuta, Value: string(receiptOrCompleta(tx.Receipt))},
	)
	dc := g.daticert(tx, daticert.TipoPostaCertificata, "")
	dc.Receipt = receiptOrCompleta(tx.Receipt)
	return g.sign(KindBustaTrasporto, tx.Identificativo, hdr, g.textBusta(tx), dc, tx.Original)
}

// PreavvisoMancataConsegna builds the avviso di mancata consegna per
// superamento dei tempi massimi (RFC 6109 §3.1.6) the punto di accesso sends
// the mittente when recipient has neither a ricevuta di presa in carico nor
// one of avvenuta consegna after 12 hours (Timeout12h), or no ricevuta di
// avvenuta consegna after 24 (Timeout24h). Both carry X-Ricevuta
// preavviso-errore-consegna; the text differs. The rules address the avviso
// "To: [original recipient]", which their own description contradicts (it
// goes to the sender); it is addressed to the mittente.
func (g *Gestore) PreavvisoMancataConsegna(tx *Transaction, recipient string, after Timeout) (*Built, error) {
	if err := g.checkRecipient(tx, recipient, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di mancata consegna per superamento dei tempi massimi: %w", err)
	}
	if after != Timeout12h && after != Timeout24h {
		return nil, fmt.Errorf("pec: avviso di mancata consegna per superamento dei tempi massimi: timeout %d is neither 12 nor 24 hours", after)
	}
	dc := g.daticert(tx, daticert.TipoPreavvisoErroreConsegna, daticert.ErroreAltro)
	dc.Consegna = recipient
	dc.ErroreEsteso = "Mancata consegna entro " + strconv.Itoa(int(after)) + " ore dall'invio"
	return g.notification(KindPreavvisoMancataConsegna, tx, tx.Mittente, nil, g.textPreavviso(tx, recipient, after), dc, nil)
}

// PresaInCarico builds the ricevuta di presa in carico (RFC 6109 §3.2.1)
// the punto di ricezione sends, once per busta, to the service mailbox of
// the mittente's gestore (to, its mailReceipt in the indice dei gestori),
// listing in ricezione the destinatari it takes charge of.
func (g *Gestore) PresaInCarico(tx *Transaction, ricezione []string, to string) (*Built, error) {
	if err := g.checkTx(tx, false); err != nil {
		return nil, fmt.Errorf("pec: ricevuta di presa in carico: %w", err)
	}
	if len(ricezione) == 0 {
		return nil, errors.New("pec: ricevuta di presa in carico: no destinatari taken in charge")
	}
	for _, r := range ricezione {
		if !tx.hasDestinatario(r) {
			return nil, fmt.Errorf("pec: ricevuta di presa in carico: %s is not a destinatario of the message", r)
		}
	}
	if to = strings.TrimSpace(to); !strings.Contains(to, "@") {
		return nil, fmt.Errorf("pec: ricevuta di presa in carico: invalid service mailbox %q", to)
	}
	dc := g.daticert(tx, daticert.TipoPresaInCarico, "")
	dc.Ricezione = append([]string(nil), ricezione...)
	return g.notification(KindPresaInCarico, tx, to, nil, g.textPresaInCarico(tx, ricezione), dc, nil)
}

// Anomalia describes a message the punto di ricezione wraps in a busta di
// anomalia.
type Anomalia struct {
	// Received is the message as it arrived.
	Received []byte
	// Mittente is the SMTP reverse path; empty means the address of the
	// message's From field.
	Mittente string
	// Time is the riferimento temporale of the arrival.
	Time time.Time
	// Reason says, in Italian, why the message is not certified, for
	// example "la firma digitale del messaggio non risulta attendibile".
	Reason string
}

// BustaAnomalia builds the busta di anomalia (RFC 6109 §3.2.2) in which the
// punto di ricezione delivers a message that is not a correct PEC message:
// X-Trasporto errore, From "Per conto di: [mittente]"
// <posta-certificata@domain>, the Received, Return-Path, To, Cc, Reply-To
// and Message-ID fields of the message (Reply-To set to the mittente when it
// has none, a new msgid when it has no Message-ID). The busta carries no
// dati di certificazione: its parts are the text, which states the reason,
// and the whole message as postacert.eml.
func (g *Gestore) BustaAnomalia(a Anomalia) (*Built, error) {
	if err := g.usable(); err != nil {
		return nil, fmt.Errorf("pec: busta di anomalia: %w", err)
	}
	if a.Time.IsZero() {
		return nil, errors.New("pec: busta di anomalia: the riferimento temporale is zero")
	}
	if len(a.Received) == 0 {
		return nil, errors.New("pec: busta di anomalia: no message")
	}
	reason := oneLine(a.Reason)
	if reason == "" {
		return nil, errors.New("pec: busta di anomalia: the reason is empty")
	}
	rh, _, err := splitHeader(a.Received)
	if err != nil {
		return nil, fmt.Errorf("pec: busta di anomalia: the message header cannot be read: %w", err)
	}
	mittente := strings.TrimSpace(a.Mittente)
	if mittente == "" {
		if mittente = firstAddress(rh.value("From")); mittente == "" {
			return nil, errors.New("pec: busta di anomalia: no mittente: the message has no From address and none was given")
		}
	}
	msgID := strings.Trim(rh.value("Message-ID"), "<> \t")
	if msgID == "" || strings.ContainsAny(msgID, "<> \t") {
		if msgID, err = g.newMsgID(a.Time); err != nil {
			return nil, fmt.Errorf("pec: busta di anomalia: %w", err)
		}
	}
	subject := subjectOf(rh)
	from := onBehalfOf(mittente, g.Address())
	hdr := inherit(nil, rh, "Received", "Return-Path")
	hdr = append(hdr,
		smime.Field{Name: "Date", Value: g.dateValue(a.Time)},
		subjectField(KindBustaAnomalia.SubjectPrefix(), subject),
		smime.Field{Name: "From", Value: from},
		smime.Field{Name: "Sender", Value: from},
	)
	hdr = inherit(hdr, rh, "To", "Cc", "Reply-To")
	if rh.value("Reply-To") == "" {
		hdr = append(hdr, smime.Field{Name: "Reply-To", Value: mittente})
	}
	hdr = append(hdr,
		smime.Field{Name: "Message-ID", Value: "<" + msgID + ">"},
		smime.Field{Name: HeaderTrasporto, Value: rules(KindBustaAnomalia).trasporto},
	)
	return g.sign(KindBustaAnomalia, msgID, hdr, g.textAnomalia(subject, mittente, a.Time, reason), nil, a.Received)
}

// RilevazioneVirus builds the avviso di rilevazione virus informatico (RFC
// 6109 §3.2.3) the punto di ricezione sends, one per recipient, to the
// service mailbox of the mittente's gestore (to) when it finds a virus,
// named by virus, in a busta addressed to recipient. It carries X-Mittente
// and never the original.
func (g *Gestore) RilevazioneVirus(tx *Transaction, recipient, to, virus string) (*Built, error) {
	virus = oneLine(virus)
	if err := g.checkRecipient(tx, recipient, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di rilevazione virus: %w", err)
	}
	if virus == "" {
		return nil, errors.New("pec: avviso di rilevazione virus: the virus is not named")
	}
	if to = strings.TrimSpace(to); !strings.Contains(to, "@") {
		return nil, fmt.Errorf("pec: avviso di rilevazione virus: invalid service mailbox %q", to)
	}
	dc := g.daticert(tx, daticert.TipoRilevazioneVirus, daticert.ErroreVirus)
	dc.Consegna = recipient
	dc.ErroreEsteso = virus
	extra := []smime.Field{{Name: HeaderMittente, Value: tx.Mittente}}
	return g.notification(KindRilevazioneVirus, tx, to, extra, g.textRilevazioneVirus(tx, recipient, virus), dc, nil)
}

// MancataConsegnaVirus builds the avviso di mancata consegna per virus
// informatico (RFC 6109 §3.2.4) the mittente's gestore sends the mittente
// after an avviso di rilevazione virus about recipient, virus naming what
// was found. It carries X-VerificaSicurezza: errore.
func (g *Gestore) MancataConsegnaVirus(tx *Transaction, recipient, virus string) (*Built, error) {
	virus = oneLine(virus)
	if err := g.checkRecipient(tx, recipient, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di mancata consegna per virus: %w", err)
	}
	if virus == "" {
		return nil, errors.New("pec: avviso di mancata consegna per virus: the virus is not named")
	}
	dc := g.daticert(tx, daticert.TipoErroreConsegna, daticert.ErroreVirus)
	dc.Consegna = recipient
	dc.ErroreEsteso = virus
	extra := []smime.Field{{Name: HeaderVerificaSicurezza, Value: "errore"}}
	return g.notification(KindMancataConsegnaVirus, tx, tx.Mittente, extra, g.textMancataConsegnaVirus(tx, recipient, virus), dc, nil)
}

// AvvenutaConsegna builds the ricevuta di avvenuta consegna (RFC 6109
// §3.3.2) the punto di consegna sends the mittente once the busta is in
// recipient's mailbox, in the given form: completa carries the original as
// postacert.eml; breve carries it with every attachment replaced by a
// "<name>.hash" file holding its SHA-1 (see Breve); sintetica carries no
// original. Transaction.ReceiptFor gives the form the rules want: breve and
// completa only when the mittente asked for them (Transaction.Receipt),
// sintetica always. The daticert ricevuta is the form the mittente asked for.
func (g *Gestore) AvvenutaConsegna(tx *Transaction, recipient string, form daticert.ReceiptType) (*Built, error) {
	if !form.Valid() {
		return nil, fmt.Errorf("pec: ricevuta di avvenuta consegna: unknown form %q", form)
	}
	if err := g.checkRecipient(tx, recipient, form != daticert.ReceiptSintetica); err != nil {
		return nil, fmt.Errorf("pec: ricevuta di avvenuta consegna %s: %w", form, err)
	}
	if asked := receiptOrCompleta(tx.Receipt); form != daticert.ReceiptSintetica && form != asked {
		return nil, fmt.Errorf("pec: ricevuta di avvenuta consegna %s: the mittente asked for a ricevuta %s (Transaction.ReceiptFor gives the form due)", form, asked)
	}
	kind, original := KindConsegnaCompleta, tx.Original
	switch form {
	case daticert.ReceiptBreve:
		kind = KindConsegnaBreve
		var err error
		if original, err = Breve(tx.Original); err != nil {
			return nil, err
		}
	case daticert.ReceiptSintetica:
		kind, original = KindConsegnaSintetica, nil
	}
	dc := g.daticert(tx, daticert.TipoAvvenutaConsegna, "")
	dc.Receipt = receiptOrCompleta(tx.Receipt)
	dc.Consegna = recipient
	return g.notification(kind, tx, tx.Mittente, nil, g.textConsegna(tx, recipient, form), dc, original)
}

// MancataConsegna builds the avviso di mancata consegna (RFC 6109 §3.3.3)
// the punto di consegna sends the mittente when the busta cannot be
// delivered to recipient. errore classifies the failure (no-dest,
// no-dominio or altro; virus has its own avviso, MancataConsegnaVirus) and
// detail describes it, as errore-esteso, for example "5.1.1 - indirizzo non
// valido".
func (g *Gestore) MancataConsegna(tx *Transaction, recipient string, errore daticert.Errore, detail string) (*Built, error) {
	detail = oneLine(detail)
	if err := g.checkRecipient(tx, recipient, false); err != nil {
		return nil, fmt.Errorf("pec: avviso di mancata consegna: %w", err)
	}
	switch errore {
	case daticert.ErroreNoDest, daticert.ErroreNoDominio, daticert.ErroreAltro:
	default:
		return nil, fmt.Errorf("pec: avviso di mancata consegna: errore %q is not no-dest, no-dominio or altro", errore)
	}
	if detail == "" {
		return nil, errors.New("pec: avviso di mancata consegna: the error detail is empty")
	}
	dc := g.daticert(tx, daticert.TipoErroreConsegna, errore)
	dc.Consegna = recipient
	dc.ErroreEsteso = detail
	return g.notification(KindMancataConsegna, tx, tx.Mittente, nil, g.textMancataConsegna(tx, recipient, detail), dc, nil)
}

// checkTx checks that g was made by NewGestore and that tx can be built
// from; needOriginal says whether the message carries the original.
func (g *Gestore) checkTx(tx *Transaction, needOriginal bool) error {
	if err := g.usable(); err != nil {
		return err
	}
	return tx.check(needOriginal)
}

// usable checks that g was made by NewGestore.
func (g *Gestore) usable() error {
	if g == nil || g.signer == nil || g.ids == nil || g.rome == nil {
		return errors.New("the Gestore was not made by NewGestore")
	}
	return nil
}

// checkRecipient validates tx and recipient, who must be a destinatario.
func (g *Gestore) checkRecipient(tx *Transaction, recipient string, needOriginal bool) error {
	if err := g.checkTx(tx, needOriginal); err != nil {
		return err
	}
	if strings.TrimSpace(recipient) == "" {
		return errors.New("the recipient is empty")
	}
	if !tx.hasDestinatario(recipient) {
		return fmt.Errorf("%s is not a destinatario of the message", recipient)
	}
	return nil
}

// daticert returns the dati di certificazione of a message about tx.
func (g *Gestore) daticert(tx *Transaction, tipo daticert.Tipo, errore daticert.Errore) *daticert.Daticert {
	ds := make([]daticert.Destinatario, len(tx.Destinatari))
	for i, d := range tx.Destinatari {
		ds[i] = daticert.Destinatario{Address: strings.TrimSpace(d.Address), Tipo: d.Tipo}
		if ds[i].Tipo == "" {
			ds[i].Tipo = daticert.DestinatarioCertificato
		}
	}
	risposte := tx.ReplyTo
	if risposte == "" {
		// The gestori in service write the mittente when the original
		// has no Reply-To, which is where the busta's Reply-To points.
		risposte = tx.Mittente
	}
	if errore == "" {
		errore = daticert.ErroreNessuno
	}
	return &daticert.Daticert{
		Tipo:             tipo,
		Errore:           errore,
		Mittente:         strings.TrimSpace(tx.Mittente),
		Destinatari:      ds,
		ReplyTo:          risposte,
		Oggetto:          tx.Subject,
		GestoreEmittente: g.name,
		Time:             tx.Time,
		Identificativo:   tx.Identificativo,
		MessageID:        tx.MessageID,
	}
}

// notification builds a ricevuta or avviso of kind about tx addressed to
// to: a new msgid, the header fields of RFC 6109 §3 and, when original is
// not nil, the original as postacert.eml.
func (g *Gestore) notification(kind Kind, tx *Transaction, to string, extra []smime.Field, t text, dc *daticert.Daticert, original []byte) (*Built, error) {
	ki := rules(kind)
	msgID, err := g.newMsgID(tx.Time)
	if err != nil {
		return nil, fmt.Errorf("pec: %s: %w", ki.name, err)
	}
	hdr := []smime.Field{
		{Name: "Date", Value: g.dateValue(tx.Time)},
		subjectField(ki.prefix, tx.Subject),
		{Name: "From", Value: g.Address()},
		{Name: "Sender", Value: g.Address()},
		{Name: "To", Value: to},
		{Name: "Message-ID", Value: "<" + msgID + ">"},
		{Name: HeaderRiferimentoMessageID, Value: tx.MessageID},
		{Name: HeaderRicevuta, Value: ki.ricevuta},
	}
	hdr = append(hdr, extra...)
	return g.sign(kind, msgID, hdr, t, dc, original)
}

// sign assembles the multipart/mixed entity of a message and signs it.
func (g *Gestore) sign(kind Kind, msgID string, hdr []smime.Field, t text, dc *daticert.Daticert, original []byte) (*Built, error) {
	ki := rules(kind)
	for i, f := range hdr {
		v, err := asciiValue(f.Name, f.Value)
		if err != nil {
			return nil, fmt.Errorf("pec: %s: %w", ki.name, err)
		}
		hdr[i].Value = v
	}
	var xml []byte
	if dc != nil {
		var err error
		if xml, err = daticert.Marshal(dc); err != nil {
			return nil, fmt.Errorf("pec: %s: %w", ki.name, err)
		}
	}
	entity, err := assemble(msgID, t, xml, original)
	if err != nil {
		return nil, fmt.Errorf("pec: %s: %w", ki.name, err)
	}
	msg, err := smime.SignMessage(hdr, entity, g.signer)
	if err != nil {
		return nil, fmt.Errorf("pec: %s: %w", ki.name, err)
	}
	return &Built{Kind: kind, MessageID: msgID, Message: msg, Daticert: dc}, nil
}

// mimeHeader returns a go-message header holding the fields of kv (name,
// value, name, value...) so that they are written in that order (go-message
// writes the fields last added first).
func mimeHeader(kv ...string) message.Header {
	var h message.Header
	for i := len(kv) - 2; i >= 0; i -= 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// boundaryFor returns a multipart boundary derived from the msgid, so that a
// message is the same bytes each time it is built from the same data, and
// absent from content.
func boundaryFor(msgID, role string, content ...[]byte) (string, error) {
	for n := 0; n < 8; n++ {
		sum := sha256.Sum256([]byte("pec boundary\x00" + role + "\x00" + strconv.Itoa(n) + "\x00" + msgID))
		b := "----=_pec_" + role + "_" + hex.EncodeToString(sum[:12])
		clash := false
		for _, c := range content {
			if bytes.Contains(c, []byte(b)) {
				clash = true
				break
			}
		}
		if !clash {
			return b, nil
		}
	}
	return "", errors.New("cannot choose a multipart boundary absent from the content")
}

// assemble writes the multipart/mixed entity of a message: the text as
// multipart/alternative, then daticert.xml when xml is not nil, then the
// original as postacert.eml when original is not nil.
func assemble(msgID string, t text, xml, original []byte) ([]byte, error) {
	mixed, err := boundaryFor(msgID, "mixed", original)
	if err != nil {
		return nil, err
	}
	alt, err := boundaryFor(msgID, "alt", original)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(original) + len(xml)*4/3 + 8192)
	root := mimeHeader("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mixed}))
	// Added raw, the field keeps its usual spelling (go-message would
	// write Mime-Version) and is written first.
	root.AddRaw([]byte("MIME-Version: 1.0\r\n"))
	w, err := message.CreateWriter(&buf, root)
	if err != nil {
		return nil, err
	}
	aw, err := w.CreatePart(mimeHeader("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": alt})))
	if err != nil {
		return nil, err
	}
	for _, p := range []struct{ typ, body string }{{"text/plain", t.plain()}, {"text/html", t.html()}} {
		pw, err := aw.CreatePart(mimeHeader(
			"Content-Type", p.typ+`; charset="utf-8"`,
			"Content-Transfer-Encoding", "quoted-printable"))
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write([]byte(p.body)); err != nil {
			return nil, err
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	if xml != nil {
		pw, err := w.CreatePart(mimeHeader(
			"Content-Type", `application/xml; name="daticert.xml"`,
			"Content-Disposition", `inline; filename="daticert.xml"`,
			"Content-Transfer-Encoding", "base64"))
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write(xml); err != nil {
			return nil, err
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
	}
	if original != nil {
		pw, err := w.CreatePart(mimeHeader(
			"Content-Type", `message/rfc822; name="postacert.eml"`,
			"Content-Disposition", `inline; filename="postacert.eml"`,
			"Content-Transfer-Encoding", originalEncoding(original)))
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write(original); err != nil {
			return nil, err
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// originalEncoding returns the Content-Transfer-Encoding that carries the
// original unmodified: 7bit for ASCII, 8bit for other text, and base64 for a
// message with NUL bytes or lines longer than SMTP carries (998 bytes),
// which a 7bit or 8bit part would have to break. RFC 2046 §5.2.1 wants
// message/rfc822 in an identity encoding; base64 keeps the content intact
// where that cannot, and the parsers of the gestori in service read it.
func originalEncoding(b []byte) string {
	enc := "7bit"
	for i := 0; i < len(b); {
		l, next := line(b, i)
		if len(l) > 998 || bytes.IndexByte(l, 0) >= 0 {
			return "base64"
		}
		if enc == "7bit" {
			for _, c := range l {
				if c >= 0x80 {
					enc = "8bit"
					break
				}
			}
		}
		i = next
	}
	return enc
}

// dateValue writes the riferimento temporale as a Date value (RFC 5322
// §3.3) in Europe/Rome, as the gestori in service do.
func (g *Gestore) dateValue(t time.Time) string {
	return t.In(g.rome).Format("Mon, 2 Jan 2006 15:04:05 -0700")
}

// subjectField returns the Subject field of a message: prefix, then the
// original subject s (see subjectValue). The field is never folded inside
// the prefix or right after it, so that a decoder that unfolds carelessly
// (dropping the white space of a folded line) still prints
// "ACCETTAZIONE: Risposta", not "ACCETTAZIONE:Risposta".
func subjectField(prefix, s string) smime.Field {
	return smime.Field{Name: "Subject", Value: subjectValue(prefix, s), Keep: len(prefix)}
}

// subjectValue returns the Subject value prefix followed by the original
// subject s. The prefix stays plain, so that programs matching it on the raw
// field find it; s is written as it is when it is printable ASCII, otherwise
// as RFC 2047 encoded words in UTF-8 (see encodeWords), the first one short
// enough to share the first line of the field with the prefix.
func subjectValue(prefix, s string) string {
	s = oneLine(s)
	if isASCII(s) {
		return prefix + s
	}
	return prefix + encodeWords(s, max(78-len("Subject: ")-len(prefix), minEncodedWord))
}

// maxEncodedWord is the longest RFC 2047 encoded word (RFC 2047 §2), and
// minEncodedWord the room encodeWords gives the first word at least: a
// 4-byte character in Q encoding, between "=?utf-8?q?" and "?=".
const (
	maxEncodedWord = 75
	minEncodedWord = len("=?utf-8?q?") + 12 + len("?=")
)

// encodeWords returns s as RFC 2047 Q-encoded words in UTF-8 separated by
// spaces, where a header field may be folded: the first word at most first
// bytes long, the others at most 75, each holding whole characters. Every
// part of s is encoded, ASCII included: mime.WordEncoder leaves a chunk
// without special characters as it is, and text next to an encoded word
// would not be read back the same (the space between them is kept, the one
// between two encoded words is not). Only letters, digits and "!*+-/" stay
// as they are, the characters RFC 2047 §5(3) allows anywhere.
func encodeWords(s string, first int) string {
	const open, closing = "=?utf-8?q?", "?="
	var b, word strings.Builder
	limit := first
	flush := func() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(open + word.String() + closing)
		word.Reset()
		limit = maxEncodedWord
	}
	var enc []byte
	for _, r := range s {
		enc = enc[:0]
		var u [utf8.UTFMax]byte
		for _, c := range u[:utf8.EncodeRune(u[:], r)] {
			switch {
			case c == ' ':
				enc = append(enc, '_')
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
				enc = append(enc, c)
			default:
				enc = append(enc, '=', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
			}
		}
		if word.Len() > 0 && len(open)+word.Len()+len(enc)+len(closing) > limit {
			flush()
		}
		word.Write(enc)
	}
	if word.Len() > 0 {
		flush()
	}
	return b.String()
}

// oneLine returns s as one line of valid UTF-8 that XML can carry: a
// string that is not UTF-8 is read as ISO-8859-1 (what the raw 8-bit header
// fields of old clients usually are), line breaks, other control characters
// and the noncharacters U+FFFE and U+FFFF become spaces, and the result is
// trimmed.
func oneLine(s string) string {
	if !utf8.ValidString(s) {
		r := make([]rune, len(s))
		for i := 0; i < len(s); i++ {
			r[i] = rune(s[i])
		}
		s = string(r)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r >= 0x7f && r < 0xa0 || r == 0xfffe || r == 0xffff {
			return ' '
		}
		return r
	}, s))
}

// onBehalfOf returns the From value of the buste: "Per conto di:
// [mittente]" <address> (RFC 6109 §3.1.5).
func onBehalfOf(mittente, address string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"Per conto di: ` + r.Replace(oneLine(mittente)) + `" <` + address + `>`
}

// inherit appends to hdr the fields of h named names, in h's order, as the
// buste inherit them from the message they carry (RFC 6109 §2.1.1.2).
func inherit(hdr []smime.Field, h header, names ...string) []smime.Field {
	for _, f := range h {
		for _, n := range names {
			if strings.EqualFold(f.name, n) {
				// A tab that starts a continuation line becomes a
				// space, where the field may be folded again.
				v := unfold(bytes.ReplaceAll(f.raw, []byte("\n\t"), []byte("\n ")))
				if v == "" {
					continue
				}
				hdr = append(hdr, smime.Field{Name: n, Value: v})
			}
		}
	}
	return hdr
}

// asciiValue returns v fit for smime.SignMessage: line breaks unfolded and,
// for an address field holding text that is not ASCII, the display names
// re-encoded (RFC 2047). It fails for a value that cannot be made ASCII.
func asciiValue(name, v string) (string, error) {
	v = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
	if isASCII(v) {
		return v, nil
	}
	switch strings.ToLower(name) {
	case "to", "cc", "reply-to", "from", "sender", "x-mittente", "return-path":
		if list, err := mail.ParseAddressList(v); err == nil {
			parts := make([]string, len(list))
			for i, a := range list {
				parts[i] = a.String()
			}
			if s := strings.Join(parts, ", "); isASCII(s) {
				return s, nil
			}
		}
	case "subject":
		return subjectValue("", v), nil
	}
	return "", fmt.Errorf("header field %s holds text that is not ASCII and cannot be encoded: %q", name, truncate(v, 60))
}

// isASCII reports whether s is printable ASCII (tabs allowed).
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// firstAddress returns the bare address of the first mailbox in an address
// list value, or "".
func firstAddress(v string) string {
	if list, err := mail.ParseAddressList(decodeWords(v)); err == nil && len(list) > 0 {
		return list[0].Address
	}
	if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i+1 {
		return strings.TrimSpace(v[i+1 : j])
	}
	if v = strings.TrimSpace(v); strings.Count(v, "@") == 1 && !strings.ContainsAny(v, " \t,;<>\"") {
		return v
	}
	return ""
}

// receiptOrCompleta returns r, or completa when r is empty.
func receiptOrCompleta(r daticert.ReceiptType) daticert.ReceiptType {
	if r == "" {
		return daticert.ReceiptCompleta
	}
	return r
}
