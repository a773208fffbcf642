package pec

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/custode/custode/pec/daticert"
)

// A Transaction describes the original message a busta, ricevuta or avviso
// is about, and the processing that emits it. The fields from Mittente to
// Receipt are those daticert.xml certifies; Original is the message itself
// where the rules carry it.
//
// All the messages built from one Transaction share its Time: that is how
// the single riferimento temporale of RFC 6109 §4.1 is kept. The punto di
// accesso builds the ricevuta di accettazione and the busta di trasporto
// from the Transaction NewTransaction returns; the punto di ricezione and the
// punto di consegna build theirs from TransactionFromBusta, with the time of
// their own processing.
type Transaction struct {
	// Identificativo is the PEC msgid the punto di accesso assigned to
	// the message, without angle brackets: the Message-ID of the busta di
	// trasporto and of the original inside it, and the identificativo of
	// every daticert of the transaction.
	Identificativo string
	// Time is the riferimento temporale of the processing: the Date of
	// the messages built, their daticert data, and the date and time their
	// text states, in Europe/Rome.
	Time time.Time
	// Mittente is the certified sender: the SMTP reverse path.
	Mittente string
	// Destinatari are the certified recipients, the SMTP forward paths,
	// each with its tipo (certificato or esterno).
	Destinatari []daticert.Destinatario
	// ReplyTo is the Reply-To value of the original message; may be empty.
	ReplyTo string
	// Subject is the subject of the original message, RFC 2047 encoded
	// words decoded.
	Subject string
	// MessageID is the Message-ID the sender's client gave the original,
	// angle brackets included: the X-Riferimento-Message-ID of every
	// message of the transaction and the daticert msgid.
	MessageID string
	// Receipt is the ricevuta di avvenuta consegna the sender asked for
	// (X-TipoRicevuta); empty means completa.
	Receipt daticert.ReceiptType
	// Original is the original message as the busta di trasporto carries
	// it in postacert.eml (its Message-ID already replaced by the
	// identificativo); nil when not known, which only the ricevute and
	// avvisi that do not carry it allow.
	Original []byte
}

// Envelope is the SMTP envelope of a message submitted at the punto di
// accesso, which the rules take as the certified sender and recipients (RFC
// 6109 §2.1).
type Envelope struct {
	// Mittente is the reverse path (MAIL FROM).
	Mittente string
	// Destinatari are the forward paths (RCPT TO), each with its tipo,
	// which the punto di accesso looks up in the indice dei gestori.
	Destinatari []daticert.Destinatario
	// Trace holds the trace fields of the reception, CRLF-terminated
	// (the Received field, Received.Field), which NewTransaction puts at
	// the top of the original: postacert.eml and the busta di trasporto,
	// which inherits its Received fields, carry it, as with the gestori in
	// service. Empty means none.
	Trace string
}

// NewTransaction starts the transaction of a message msg submitted at the
// punto di accesso with envelope env, at the riferimento temporale at. It
// assigns the identificativo (a new PEC msgid) and prepares the original as
// RFC 6109 §2.2.1 says: the client's Message-ID is replaced by the
// identificativo and kept as X-Riferimento-Message-ID. A message without a
// Message-ID (or with one that is not printable ASCII) is given the
// identificativo as both. Any X-Riferimento-Message-ID
// the client wrote is removed. X-TipoRicevuta picks the ricevuta di avvenuta
// consegna; absent or unknown, it is completa.
//
// NewTransaction does not perform the formal checks of RFC 6109 §3.1.1;
// it fails only for a message whose header cannot be read, an empty
// mittente or no destinatari.
func (g *Gestore) NewTransaction(msg []byte, env Envelope, at time.Time) (*Transaction, error) {
	if at.IsZero() {
		return nil, errors.New("pec: transaction: the riferimento temporale is zero")
	}
	if err := checkEnvelope(env.Mittente, env.Destinatari); err != nil {
		return nil, fmt.Errorf("pec: transaction: %w", err)
	}
	h, body, err := splitHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("pec: transaction: the message header cannot be read: %w", err)
	}
	id, err := g.NewMsgID(at)
	if err != nil {
		return nil, err
	}
	tx := &Transaction{
		Identificativo: id,
		Time:           at,
		Mittente:       strings.TrimSpace(env.Mittente),
		Destinatari:    append([]daticert.Destinatario(nil), env.Destinatari...),
		ReplyTo:        addresses(h.value("Reply-To")),
		Subject:        subjectOf(h),
		MessageID:      h.value("Message-ID"),
		Receipt:        receiptType(h.value(HeaderTipoRicevuta)),
	}
	if tx.MessageID == "" || len(tx.MessageID) > 900 || !isASCII(tx.MessageID) {
		// Nothing the header fields of the transaction can carry.
		tx.MessageID = "<" + id + ">"
	}
	tx.Original = rewriteIDs(msg, body, id, tx.MessageID)
	if env.Trace != "" {
		trace, err := traceFields(env.Trace, tx.Original)
		if err != nil {
			return nil, fmt.Errorf("pec: transaction: %w", err)
		}
		tx.Original = append(trace, tx.Original...)
	}
	return tx, nil
}

// checkEnvelope checks the certified sender and recipients.
func checkEnvelope(mittente string, destinatari []daticert.Destinatario) error {
	if strings.TrimSpace(mittente) == "" {
		return errors.New("the mittente is empty")
	}
	if len(destinatari) == 0 {
		return errors.New("no destinatari")
	}
	for i, d := range destinatari {
		if strings.TrimSpace(d.Address) == "" {
			return fmt.Errorf("destinatario %d is empty", i+1)
		}
		if d.Tipo != "" && !d.Tipo.Valid() {
			return fmt.Errorf("destinatario %s has tipo %q", d.Address, d.Tipo)
		}
	}
	return nil
}

// addresses returns the bare addresses of an address list value, joined
// by ", ", as daticert writes risposte; a value that does not parse is
// returned decoded, on one line.
func addresses(v string) string {
	if v == "" {
		return ""
	}
	list, err := mail.ParseAddressList(decodeWords(v))
	if err != nil || len(list) == 0 {
		return oneLine(decodeWords(v))
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return strings.Join(out, ", ")
}

// subjectOf returns the decoded Subject of h, control characters turned
// into spaces and surrounding space removed.
func subjectOf(h header) string {
	return oneLine(decodeWords(h.value("Subject")))
}

// receiptType reads an X-TipoRicevuta value: completa when absent or not
// one of the three the rules define.
func receiptType(v string) daticert.ReceiptType {
	r := daticert.ReceiptType(strings.ToLower(strings.TrimSpace(v)))
	if !r.Valid() {
		return daticert.ReceiptCompleta
	}
	return r
}

// rewriteIDs returns msg, whose body starts at offset body, with its
// Message-ID and X-Riferimento-Message-ID fields removed and
// "Message-ID: <id>" and "X-Riferimento-Message-ID: ref" appended to its
// header, which is where the gestori in service put them. The rest of the
// message is kept byte for byte.
func rewriteIDs(msg []byte, body int, id, ref string) []byte {
	eol := "\r\n"
	if l, next := line(msg, 0); next == len(l)+1 {
		eol = "\n"
	}
	var b bytes.Buffer
	b.Grow(len(msg) + len(id) + len(ref) + 64)
	added := func() {
		if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
			b.WriteString(eol)
		}
		b.WriteString("Message-ID: <" + id + ">" + eol)
		b.WriteString(HeaderRiferimentoMessageID + ": " + ref + eol)
	}
	skip := false
	for i := 0; i < body; {
		l, next := line(msg, i)
		switch {
		case len(l) == 0:
			added()
			b.Write(msg[i:]) // the empty line and the body
			return b.Bytes()
		case l[0] == ' ' || l[0] == '\t':
		default:
			name, _, _ := bytes.Cut(l, []byte(":"))
			name = bytes.TrimRight(name, " \t")
			skip = bytes.EqualFold(name, []byte("Message-ID")) || bytes.EqualFold(name, []byte(HeaderRiferimentoMessageID))
		}
		if !skip {
			b.Write(msg[i:next])
		}
		i = next
	}
	// The header ended without an empty line.
	added()
	b.WriteString(eol)
	b.Write(msg[body:])
	return b.Bytes()
}

// TransactionFromBusta returns the transaction a busta di trasporto m
// carries, for the messages the punto di ricezione and the punto di
// consegna emit about it, at the riferimento temporale of their processing.
// The fields come from the busta's daticert; Original is its postacert.eml
// (sharing memory with m) and Receipt its X-TipoRicevuta, or the daticert
// ricevuta when the header is absent.
func TransactionFromBusta(m *Message, at time.Time) (*Transaction, error) {
	switch {
	case m == nil:
		return nil, errors.New("pec: transaction: no message")
	case m.Kind != KindBustaTrasporto:
		return nil, fmt.Errorf("pec: transaction: the message is a %s, not a busta di trasporto", m.Kind.Name())
	case m.Daticert == nil:
		return nil, errors.New("pec: transaction: the busta di trasporto has no daticert.xml")
	case at.IsZero():
		return nil, errors.New("pec: transaction: the riferimento temporale is zero")
	}
	d := m.Daticert
	tx := &Transaction{
		Identificativo: strings.Trim(d.Identificativo, "<> "),
		Time:           at,
		Mittente:       d.Mittente,
		Destinatari:    append([]daticert.Destinatario(nil), d.Destinatari...),
		ReplyTo:        d.ReplyTo,
		Subject:        d.Oggetto,
		MessageID:      d.MessageID,
		Receipt:        d.Receipt,
		Original:       m.Original,
	}
	if v := m.Header.TipoRicevuta; v != "" {
		tx.Receipt = receiptType(v)
	}
	if tx.Receipt == "" {
		tx.Receipt = daticert.ReceiptCompleta
	}
	return tx, nil
}

// ReceiptFor returns the form of ricevuta di avvenuta consegna due for
// recipient (RFC 6109 §3.3.2.1): breve or sintetica when the sender asked
// for it; otherwise completa for a recipient in the original's To field and
// sintetica for one only in Cc. A recipient found in neither, or an original
// that is not known, gets completa: in doubt the rules treat a recipient as
// primary.
func (tx *Transaction) ReceiptFor(recipient string) daticert.ReceiptType {
	if tx.Receipt == daticert.ReceiptBreve || tx.Receipt == daticert.ReceiptSintetica {
		return tx.Receipt
	}
	if tx.Original == nil {
		return daticert.ReceiptCompleta
	}
	h, _, err := splitHeader(tx.Original)
	if err != nil {
		return daticert.ReceiptCompleta
	}
	inTo := listHas(h.values("To"), recipient)
	inCc := listHas(h.values("Cc"), recipient)
	if inCc && !inTo {
		return daticert.ReceiptSintetica
	}
	return daticert.ReceiptCompleta
}

// listHas reports whether the address lists in values hold addr, compared
// case-insensitively.
func listHas(values []string, addr string) bool {
	addr = strings.TrimSpace(addr)
	for _, v := range values {
		list, err := mail.ParseAddressList(decodeWords(v))
		if err != nil {
			// A list that does not parse: look for the address as a
			// token, which is what matters here.
			for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(" ,;<>\"\t", r) }) {
				if strings.EqualFold(tok, addr) {
					return true
				}
			}
			continue
		}
		for _, a := range list {
			if strings.EqualFold(a.Address, addr) {
				return true
			}
		}
	}
	return false
}

// check validates tx for building a message; needOriginal says whether the
// message carries the original.
func (tx *Transaction) check(needOriginal bool) error {
	switch {
	case tx == nil:
		return errors.New("no transaction")
	case tx.Time.IsZero():
		return errors.New("the riferimento temporale (Transaction.Time) is zero")
	case !strings.Contains(tx.Identificativo, "@") || strings.ContainsAny(tx.Identificativo, "<> \t\r\n"):
		return fmt.Errorf("the identificativo %q is not a msgid without angle brackets", truncate(tx.Identificativo, 60))
	case needOriginal && len(tx.Original) == 0:
		return errors.New("the original message (Transaction.Original) is missing")
	}
	if tx.Receipt != "" && !tx.Receipt.Valid() {
		return fmt.Errorf("unknown ricevuta tipo %q", tx.Receipt)
	}
	return checkEnvelope(tx.Mittente, tx.Destinatari)
}

// hasDestinatario reports whether addr is one of the transaction's
// destinatari.
func (tx *Transaction) hasDestinatario(addr string) bool {
	for _, d := range tx.Destinatari {
		if strings.EqualFold(strings.TrimSpace(d.Address), strings.TrimSpace(addr)) {
			return true
		}
	}
	return false
}

// traceFields checks that trace is a block of header fields ending in CRLF
// and returns it with the line endings of msg, which it is to head.
func traceFields(trace string, msg []byte) ([]byte, error) {
	h, end, err := splitHeader([]byte(trace + "\r\n"))
	if err != nil || len(h) == 0 || end != len(trace)+2 || !strings.HasSuffix(trace, "\r\n") || strings.Contains(strings.ReplaceAll(trace, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(trace, "\r\n", ""), "\r") {
		return nil, fmt.Errorf("the trace %q is not header fields ending in CRLF", truncate(trace, 80))
	}
	if l, next := line(msg, 0); next == len(l)+1 {
		return []byte(strings.ReplaceAll(trace, "\r\n", "\n")), nil
	}
	return []byte(trace), nil
}
