package gestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/evidence"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
)

// maxOggetto keeps a subject within the ledger's field limit, with room
// for the mark that says it was cut.
const maxOggetto = ledger.MaxFieldBytes - 64

// event returns the ledger event of message b, which the server emitted
// or received, about transaction tx.
func event(kind ledger.Kind, tx *pec.Transaction, gestoreName string, msg []byte, related ...string) ledger.Event {
	sum := sha256.Sum256(msg)
	ev := ledger.Event{
		Kind:            kind,
		Identificativo:  tx.Identificativo,
		ClientMessageID: tx.MessageID,
		Time:            tx.Time.UTC(),
		Mittente:        tx.Mittente,
		Oggetto:         tx.Subject,
		Gestore:         gestoreName,
		SHA256:          sum[:],
		Details:         map[string]string{},
	}
	if len(ev.Oggetto) > maxOggetto {
		cut := maxOggetto
		for cut > 0 && !utf8.RuneStart(ev.Oggetto[cut]) {
			cut--
		}
		ev.Oggetto = ev.Oggetto[:cut]
		ev.Details["oggetto_troncato"] = "true"
	}
	if !validMsgID(ev.ClientMessageID) {
		ev.ClientMessageID = ""
	}
	for _, d := range tx.Destinatari {
		tipo := ledger.TipoCertificato
		if d.Tipo == daticert.DestinatarioEsterno {
			tipo = ledger.TipoEsterno
		}
		if len(ev.Destinatari) < ledger.MaxRecipients {
			ev.Destinatari = append(ev.Destinatari, ledger.Recipient{Address: d.Address, Tipo: tipo})
		}
	}
	for _, r := range related {
		if r = evidence.NormalizeRelated(r); r != "" {
			ev.Related = append(ev.Related, r)
		}
	}
	if tx.Receipt != "" {
		ev.Details["tipo_ricevuta"] = string(tx.Receipt)
	}
	return ev
}

func validMsgID(id string) bool {
	if id == "" || len(id) > ledger.MaxFieldBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// entriesOf returns every ledger entry of the transaction identificativo.
func (s *Server) entriesOf(ctx context.Context, identificativo string) ([]*ledger.Entry, error) {
	var all []*ledger.Entry
	q := ledger.Query{Identificativo: identificativo, Limit: 1000}
	for e, err := range ledger.FindAll(ctx, s.opts.Ledger.Find, q) {
		if err != nil {
			return nil, fmt.Errorf("gestore: ledger lookup %s: %w", identificativo, err)
		}
		all = append(all, e)
	}
	return all, nil
}

// recorded reports whether the ledger holds an entry of the transaction
// identificativo for exactly the message msg.
func (s *Server) recorded(ctx context.Context, identificativo string, msg []byte) (bool, error) {
	entries, err := s.entriesOf(ctx, identificativo)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(msg)
	for _, e := range entries {
		if bytes.Equal(e.SHA256, sum[:]) {
			return true, nil
		}
	}
	return false, nil
}

// find returns the entries of the transaction identificativo that satisfy
// match.
func find(entries []*ledger.Entry, match func(*ledger.Entry) bool) []*ledger.Entry {
	var out []*ledger.Entry
	for _, e := range entries {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// recipientOf returns the recipient an event is about (Details
// "destinatario"), lower-cased.
func recipientOf(e *ledger.Entry) string {
	return strings.ToLower(e.Details["destinatario"])
}

// sanitize makes every string of ev fit for the ledger, whatever a client
// or another gestore sent: valid UTF-8 (bad bytes become U+FFFD), no NUL,
// within the field limits. A message is never refused for its log fields.
func sanitize(ev *ledger.Event) {
	clean := func(v string, max int) string {
		v = strings.ToValidUTF8(v, "\uFFFD")
		v = strings.ReplaceAll(v, "\x00", "")
		return truncate(v, max)
	}
	ev.Identificativo = clean(ev.Identificativo, ledger.MaxFieldBytes)
	ev.Mittente = clean(ev.Mittente, ledger.MaxFieldBytes)
	if ev.Mittente == "" {
		ev.Mittente = "<>"
	}
	ev.Oggetto = clean(ev.Oggetto, ledger.MaxFieldBytes)
	ev.Gestore = clean(ev.Gestore, ledger.MaxFieldBytes)
	if !validMsgID(ev.ClientMessageID) {
		ev.ClientMessageID = ""
	}
	for i := range ev.Destinatari {
		ev.Destinatari[i].Address = clean(ev.Destinatari[i].Address, ledger.MaxFieldBytes)
		if ev.Destinatari[i].Address == "" {
			ev.Destinatari[i].Address = "<>"
		}
	}
	for i := range ev.Related {
		ev.Related[i] = clean(ev.Related[i], ledger.MaxFieldBytes)
	}
	for k, v := range ev.Details {
		ev.Details[k] = clean(v, 4096)
	}
}
