package gestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/connlimit"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/queue"
	"github.com/custode/custode/pec/rome"
	"github.com/custode/custode/pec/smime"
)

// ricezioneBackend is the punto di ricezione (RFC 6109 §3.2): other gestori
// and ordinary mail servers deliver to our domains here.
type ricezioneBackend struct{ s *Server }

func (b *ricezioneBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.recording("ricezione", c, &ricezioneSession{s: b.s, conn: c}), nil
}

type ricezioneSession struct {
	s     *Server
	conn  *smtp.Conn
	from  string
	mail  bool
	rcpts []string
}

func (r *ricezioneSession) Mail(from string, _ *smtp.MailOptions) error {
	r.from, r.mail = from, true
	return nil
}

func (r *ricezioneSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !r.mail {
		return outcome(ReasonMailFirst, "", nil)
	}
	if strings.ContainsFunc(to, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return outcome(ReasonRecipientSyntax, "", nil)
	}
	if !r.s.ours(to) {
		return outcome(ReasonRelay, "", nil)
	}
	if !validPath(to) {
		// A form no mailbox of ours can have: a quoted local part
		// ("anna@example.org"@our.domain), a route, non-ASCII.
		return outcome(ReasonNoMailbox, "", nil)
	}
	to = strings.ToLower(to)
	if !r.s.opts.Index.IsManagedDomain(domainOf(r.from)) {
		// From outside PEC: only our mailboxes. A sender in a PEC domain
		// may be a gestore with a busta di trasporto, whose recipient
		// that is not a mailbox gets, by RFC 6109 §3.3, a ricevuta di
		// presa in carico and an avviso di mancata consegna (no-dest).
		ctx, cancel := context.WithTimeout(context.Background(), r.s.opts.Timeout)
		defer cancel()
		switch ok, err := r.s.isMailbox(ctx, to); {
		case err != nil:
			r.s.log.Error("ricezione: mailbox lookup", "err", err)
			return deferred("mailbox store", err)
		case !ok:
			return outcome(ReasonNoMailbox, "", nil)
		}
	}
	r.rcpts = append(r.rcpts, to)
	return nil
}

// validPath reports whether an envelope address is a plain
// local-part@domain of printable ASCII, with a local part that is a
// dot-atom: no quoted local part ("anna@example.org"@domain), no route,
// no control character. Our mailboxes all have such addresses.
func validPath(addr string) bool {
	if len(addr) > 254 {
		return false
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || len(addr[:at]) > 64 {
		return false
	}
	local, domain := addr[:at], addr[at+1:]
	for _, part := range strings.Split(local, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),:;<>@[\]`, c) >= 0 {
				return false
			}
		}
	}
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isMailbox reports whether address (lower-cased, in one of our domains)
// can receive at the punto di ricezione: a mailbox of the store, or the
// service address of one of our domains, where other gestori send the
// ricevute they owe us.
func (s *Server) isMailbox(ctx context.Context, address string) (bool, error) {
	if i := strings.LastIndexByte(address, '@'); i > 0 && address[:i] == "posta-certificata" {
		return true, nil
	}
	if p, ok := s.opts.Index.ProviderByDomain(s.g.Domain()); ok && strings.ToLower(p.MailReceipt) == address {
		return true, nil
	}
	_, err := s.opts.Mailboxes.Mailbox(ctx, address)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, mailstore.ErrNoSuchMailbox), errors.Is(err, mailstore.ErrInvalid):
		return false, nil
	}
	return false, err
}

func (r *ricezioneSession) Data(rd io.Reader) error {
	if !r.mail || len(r.rcpts) == 0 {
		return outcome(ReasonRcptFirst, "", nil)
	}
	msg, err := readBody(rd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.s.opts.Timeout)
	defer cancel()
	ctx = mailstore.WithEnvelope(ctx, mailstore.Envelope{ReturnPath: r.from, Trace: r.s.received(ctx, r.conn, false, r.rcpts)})
	proof := new(peerProof)
	ctx = context.WithValue(ctx, peerProofKey{}, proof)
	o := r.s.receive(ctx, r.from, r.rcpts, msg, "")
	if proof.proven && (o == nil || o.Kind() == Success) {
		// Another gestore delivered from this address: let it in
		// beside the strangers from now on (see peers).
		r.s.lim.peers.learn(r.peerKey())
	}
	if o != nil {
		return o
	}
	return accepted("")
}

// peerKey is the key under which the client's connections count against
// the listener's caps.
func (r *ricezioneSession) peerKey() string {
	nc := r.conn.Conn()
	if nc == nil {
		return ""
	}
	if c, ok := connlimit.FromConn(nc); ok {
		return c.Key()
	}
	return connlimit.AddressKey(nc.RemoteAddr())
}

// peerProof, in the context of a message received over SMTP, is set when
// the message proved its sender another gestore: a busta di trasporto
// taken in charge, or a ricevuta recorded, new and signed by a gestore of
// the indice.
type peerProof struct{ proven bool }

type peerProofKey struct{}

// provenPeer notes in ctx that its message proved its sender a gestore.
func provenPeer(ctx context.Context) {
	if p, ok := ctx.Value(peerProofKey{}).(*peerProof); ok {
		p.proven = true
	}
}

func (r *ricezioneSession) Reset() {
	r.from, r.mail, r.rcpts = "", false, nil
}

func (r *ricezioneSession) Logout() error { return nil }

// receive runs the punto di ricezione on msg, which arrived from the
// reverse path from for rcpts (all in our domains). key, when not empty,
// names the queue item it came from (messages for ourselves).
//
// A message from outside (key empty) that our own gestore signed (a
// ricevuta, a busta di anomalia, a busta di trasporto of ours, replayed)
// is never filed as it is: it becomes a busta di anomalia, recorded in the
// ledger like any other. A message of ours (key not empty) that cannot be
// read back is refused permanently (ReasonOwnUnreadable), never wrapped
// again: the queue then records its drop.
//
// The outcome is nil or ReasonOK (with the identificativo of the busta
// taken in charge, of the busta di anomalia made, or of the notice) when
// the message was taken.
func (s *Server) receive(ctx context.Context, from string, rcpts []string, msg []byte, key string) *Outcome {
	if _, ok := mailstore.EnvelopeFrom(ctx); !ok {
		// A message of ours, not received over SMTP: delivered with
		// Return-Path and Delivered-To, without Received.
		ctx = mailstore.WithEnvelope(ctx, mailstore.Envelope{ReturnPath: from})
	}
	at := s.now()
	opts := pec.ParseOptions{MaxMessageSize: s.opts.MaxSize}
	if key != "" {
		// A busta of ours wraps a message of up to MaxSize: room for
		// its base64 and its envelope.
		opts.MaxMessageSize = 0
	}
	m, err := pec.Parse(msg, opts)
	if err != nil {
		if key != "" {
			s.log.Error("ricezione: a message of ours cannot be read back", "item", key, "err", err)
			return outcome(ReasonOwnUnreadable, "", err)
		}
		if errors.Is(err, pec.ErrTooLarge) {
			return s.tooLarge(err)
		}
		return s.anomalia(ctx, from, rcpts, msg, at, outcome(ReasonAnomaliaUnreadable, "", err))
	}
	if m.Kind == pec.KindNotPEC || !m.Signed {
		if m.Kind == pec.KindNotPEC {
			return s.ordinary(ctx, from, rcpts, msg, at, key)
		}
		return s.anomalia(ctx, from, rcpts, msg, at, outcome(ReasonAnomaliaUnsigned, "", nil))
	}
	provider, why := s.checkSignature(m, at)
	if why != nil {
		return s.anomalia(ctx, from, rcpts, msg, at, why)
	}
	if key == "" && provider.Name == s.g.Name() {
		return s.anomalia(ctx, from, rcpts, msg, at, outcome(ReasonAnomaliaReplay, "", nil))
	}
	if !m.Consistent() {
		return s.anomalia(ctx, from, rcpts, msg, at, outcome(ReasonAnomaliaInconsistent, "", errors.New(strings.Join(m.Problems, "; "))))
	}
	if m.Kind == pec.KindBustaTrasporto {
		return s.receiveBusta(ctx, m, provider, rcpts, at)
	}
	return s.receiveNotice(ctx, m, provider, rcpts, at, key)
}

// checkSignature verifies m's signature against the indice dei gestori and
// returns the provider that signed it, or why it is not to be trusted.
func (s *Server) checkSignature(m *pec.Message, at time.Time) (*igpec.Provider, *Outcome) {
	if m.Signer == nil {
		return nil, outcome(ReasonAnomaliaNoSignature, "", nil)
	}
	provider, err := s.opts.Index.ProviderByCertificate(m.Signer)
	if err != nil {
		return nil, outcome(ReasonAnomaliaUnknownSigner, "", err)
	}
	// The index lists this very certificate: it is the anchor, and the
	// signature over the message is what remains to check.
	res, err := m.Verify(smime.VerifyOptions{Roots: []*x509.Certificate{m.Signer}, CurrentTime: at})
	if err != nil || (res != nil && len(res.Reasons) > 0) {
		s.log.Info("ricezione: signature refused", "signer", m.Signer.Subject.String(), "err", err)
		if err == nil {
			err = fmt.Errorf("%v", res.Reasons)
		}
		return nil, outcome(ReasonAnomaliaBadSignature, "", err)
	}
	return provider, nil
}

// ordinary handles mail that is not PEC as each recipient's policy says.
// A recipient who refuses ordinary mail makes the whole message refused:
// after DATA, SMTP cannot answer recipient by recipient.
func (s *Server) ordinary(ctx context.Context, from string, rcpts []string, msg []byte, at time.Time, key string) *Outcome {
	var anomalia, refused []string
	var items []queue.Item
	for _, r := range rcpts {
		p := s.policy(r)
		switch p.NonPEC {
		case NonPECReject:
			refused = append(refused, r)
		case NonPECFolder:
			if o := s.fileOrdinary(ctx, r, msg, at, key); o != nil {
				return o
			}
		case NonPECForward:
			items = append(items, queue.Item{
				ID:          itemID("inoltro", string(msg), r, p.ForwardTo),
				Destination: s.destinationOf(p.ForwardTo),
				Ref:         notEvidence,
				From:        from,
				To:          []string{p.ForwardTo},
				Message:     msg,
			})
		default:
			anomalia = append(anomalia, r)
		}
	}
	if len(refused) > 0 {
		return outcome(ReasonPECOnly, strings.Join(refused, ", "), nil)
	}
	if len(items) > 0 {
		// Ordinary mail is not PEC: no ledger event, but durable before
		// the 250 all the same.
		if err := s.opts.Queue.Enqueue(ctx, items...); err != nil && !errors.Is(err, queue.ErrExists) {
			s.log.Error("ricezione: forward ordinary mail", "err", err)
			return deferred("queue", err)
		}
	}
	if len(anomalia) > 0 {
		return s.anomalia(ctx, from, anomalia, msg, at, outcome(ReasonAnomaliaNotPEC, "", nil))
	}
	return nil
}

// fileOrdinary files ordinary mail in rcpt's NonPECFolderName folder,
// creating it the first time.
func (s *Server) fileOrdinary(ctx context.Context, rcpt string, msg []byte, at time.Time, key string) *Outcome {
	k := key
	if k == "" {
		k = digestKey("ordinaria", msg, rcpt)
	}
	d := mailstore.Delivery{Address: rcpt, Folder: NonPECFolderName, Message: msg, Key: k + "/" + rcpt, Time: at}
	_, err := s.opts.Mailboxes.Deliver(ctx, d)
	if errors.Is(err, mailstore.ErrNoSuchFolder) {
		if err := s.opts.Mailboxes.CreateFolder(ctx, rcpt, NonPECFolderName); err != nil && !errors.Is(err, mailstore.ErrFolderExists) {
			s.log.Error("ricezione: create folder", "to", rcpt, "err", err)
			return deferred("mailbox store", err)
		}
		_, err = s.opts.Mailboxes.Deliver(ctx, d)
	}
	switch {
	case err == nil, errors.Is(err, mailstore.ErrNoSuchMailbox), errors.Is(err, mailstore.ErrInvalid):
		return nil
	case errors.Is(err, mailstore.ErrOverQuota):
		return outcome(ReasonMailboxFull, rcpt, err)
	default:
		s.log.Error("ricezione: file ordinary mail", "to", rcpt, "err", err)
		return deferred("mailbox store", err)
	}
}

// anomalia wraps msg in a busta di anomalia for each of rcpts (RFC 6109
// §3.2.2).
//
// The gestore must always be able to deliver its own busta di anomalia,
// whatever it wraps: a busta that would not parse back (a MIME bomb of
// thousands of nested or of hundreds of thousands of parts, a header of
// 100,000 fields) is built again around an opaque copy of the message
// (see opaqueOriginal), which no parser descends into. If even that
// cannot be built, the message is refused for good
// (ReasonAnomaliaImpossible), never deferred.
//
// The busta states why's Italian sentence; its technical detail is only
// logged.
func (s *Server) anomalia(ctx context.Context, from string, rcpts []string, msg []byte, at time.Time, why *Outcome) *Outcome {
	reason := why.Testo
	wrapped := msg // with our Received on top, as it arrived here
	if e, ok := mailstore.EnvelopeFrom(ctx); ok && e.Trace != "" {
		wrapped = append([]byte(e.Trace), msg...)
	}
	b, err := s.g.BustaAnomalia(pec.Anomalia{Received: wrapped, Mittente: from, Time: at, Reason: reason})
	if err == nil {
		if _, perr := pec.Parse(b.Message, pec.ParseOptions{}); perr != nil {
			err = fmt.Errorf("the busta di anomalia does not parse back: %w", perr)
		}
	}
	if err != nil {
		s.log.Warn("ricezione: busta di anomalia around an opaque copy of the message", "err", err)
		mittente := from
		if mittente == "" {
			mittente = "<>"
		}
		b, err = s.g.BustaAnomalia(pec.Anomalia{Received: opaqueOriginal(msg), Mittente: mittente, Time: at, Reason: reason})
		if err == nil {
			if _, perr := pec.Parse(b.Message, pec.ParseOptions{}); perr != nil {
				err = fmt.Errorf("the busta di anomalia does not parse back: %w", perr)
			}
		}
	}
	if err != nil {
		s.log.Error("ricezione: busta di anomalia", "err", err)
		return outcome(ReasonAnomaliaImpossible, "", err)
	}
	tx := &pec.Transaction{Identificativo: b.MessageID, Time: at, Mittente: from}
	if hm, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		dec := new(mime.WordDecoder)
		if subj, err := dec.DecodeHeader(hm.Header.Get("Subject")); err == nil {
			tx.Subject = subj
		}
		if tx.Mittente == "" {
			if a, err := mail.ParseAddress(hm.Header.Get("From")); err == nil {
				tx.Mittente = a.Address
			}
		}
	}
	if tx.Mittente == "" {
		tx.Mittente = "<>"
	}
	for _, r := range rcpts {
		tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Address: r, Tipo: daticert.DestinatarioCertificato})
	}
	ev := event(ledger.KindBustaAnomalia, tx, s.g.Name(), b.Message, b.MessageID)
	ev.Details["motivo"] = truncate(reason, 1024)
	ev.Details["causa"] = string(why.Reason)
	received := sha256.Sum256(msg)
	ev.Details["sha256_ricevuto"] = hex.EncodeToString(received[:])
	if len(rcpts) > 0 {
		if ev.ArchiveKey, err = s.archive(ctx, rcpts[0], b.Kind, tx, b.Message); err != nil {
			return deferred("archive", err)
		}
	}
	item := queue.Item{
		ID:          itemID("anomalia", b.MessageID, rcpts...),
		Destination: localDestination,
		From:        s.g.Address(),
		To:          rcpts,
		Message:     b.Message,
	}
	if err := s.commit(ctx, []queue.Item{item}, ev); err != nil {
		s.log.Error("ricezione: commit anomalia", "err", err)
		return deferred("ledger", err)
	}
	s.log.Info("ricezione: busta di anomalia", "identificativo", b.MessageID, "causa", why.Reason, "detail", why.Detail)
	return accepted(b.MessageID)
}

// receiveBusta takes a busta di trasporto in charge: the ricevuta di presa
// in carico to the mittente's gestore, then the punto di consegna for each
// of our recipients, all recorded in one ledger append.
func (s *Server) receiveBusta(ctx context.Context, m *pec.Message, provider *igpec.Provider, rcpts []string, at time.Time) *Outcome {
	tx, err := pec.TransactionFromBusta(m, at)
	if err != nil {
		return s.anomalia(ctx, "", rcpts, m.Raw, at, outcome(ReasonAnomaliaBadBusta, "", err))
	}
	// A recipient of the envelope that the daticert does not name can
	// never be served: refused for good, whatever the sender retries.
	for _, r := range rcpts {
		if !isDestinatario(tx, r) {
			return outcome(ReasonNotDestinatario, r, nil)
		}
	}
	entries, err := s.entriesOf(ctx, tx.Identificativo)
	if err != nil {
		return deferred("ledger", err)
	}
	// A busta we already took in charge (the sender retried after a
	// lost reply): the ledger says so, answer as then.
	if len(find(entries, func(e *ledger.Entry) bool {
		return e.Kind == ledger.KindPresaInCarico && e.Gestore == s.g.Name() && coversAll(e.Details["ricezione"], rcpts)
	})) > 0 {
		return accepted(tx.Identificativo)
	}
	bustaSum := sha256.Sum256(m.Raw)
	if s.opts.Scanner != nil {
		res, err := s.opts.Scanner.Scan(ctx, m.Raw)
		if err != nil {
			s.log.Error("ricezione: virus scan", "identificativo", tx.Identificativo, "err", err)
			return deferred("virus scanner unavailable", err)
		}
		if res.Infected {
			q, err := s.quarantine(ctx, tx, pointRicezione, res.Virus, m.Raw)
			if err != nil {
				return deferred("quarantine", err)
			}
			if o := s.virusFound(ctx, tx, provider, rcpts, res.Virus, bustaSum, q); o != nil {
				return o
			}
			return accepted(tx.Identificativo)
		}
	}

	presa, err := s.g.PresaInCarico(tx, rcpts, provider.MailReceipt)
	if err != nil {
		return s.internal("ricevuta di presa in carico", tx, err)
	}
	presaEv := event(ledger.KindPresaInCarico, tx, s.g.Name(), presa.Message, presa.MessageID)
	presaEv.Details["ricezione"] = strings.Join(rcpts, " ")
	presaEv.Details["sha256_busta"] = hex.EncodeToString(bustaSum[:])
	presaEv.Details["gestore_mittente"] = provider.Name
	items := []queue.Item{{
		ID:          itemID("presa-in-carico", tx.Identificativo, rcpts...),
		Destination: s.destinationOf(provider.MailReceipt),
		From:        s.g.Address(),
		To:          []string{provider.MailReceipt},
		Message:     presa.Message,
	}}
	events := []ledger.Event{presaEv}

	for _, rcpt := range rcpts {
		var b *pec.Built
		kind := ledger.KindAvvenutaConsegna
		_, err := s.opts.Mailboxes.Deliver(ctx, mailstore.Delivery{
			Address: rcpt, Message: m.Raw, Key: itemID("consegna", tx.Identificativo, rcpt), Time: at,
		})
		errore := ""
		switch {
		case err == nil:
			b, err = s.g.AvvenutaConsegna(tx, rcpt, tx.ReceiptFor(rcpt))
		case errors.Is(err, mailstore.ErrNoSuchMailbox):
			kind, errore = ledger.KindErroreConsegna, string(daticert.ErroreNoDest)
			b, err = s.g.MancataConsegna(tx, rcpt, daticert.ErroreNoDest, "5.1.1 - indirizzo non valido")
		case errors.Is(err, mailstore.ErrInvalid):
			// What the mailbox store can never take (an address no
			// mailbox has, a message beyond its limits): for good.
			kind, errore = ledger.KindErroreConsegna, string(daticert.ErroreAltro)
			b, err = s.g.MancataConsegna(tx, rcpt, daticert.ErroreAltro, "5.3.0 - messaggio non consegnabile nella casella")
		case errors.Is(err, mailstore.ErrOverQuota):
			kind, errore = ledger.KindErroreConsegna, string(daticert.ErroreAltro)
			b, err = s.g.MancataConsegna(tx, rcpt, daticert.ErroreAltro, "5.2.2 - casella piena")
		default:
			s.log.Error("consegna: mailbox store", "identificativo", tx.Identificativo, "to", rcpt, "err", err)
			return deferred("mailbox store", err)
		}
		if err != nil {
			return s.internal("ricevuta di consegna", tx, err)
		}
		ev := event(kind, tx, s.g.Name(), b.Message, b.MessageID)
		ev.Details["destinatario"] = rcpt
		ev.Details["sha256_busta"] = hex.EncodeToString(bustaSum[:])
		if errore != "" {
			ev.Details["errore"] = errore
		} else {
			if notify := s.policy(rcpt).NotifyTo; notify != "" {
				notice, err := s.noticeOfArrival(tx, rcpt, notify)
				if err != nil {
					return s.internal("avviso di arrivo", tx, err)
				}
				items = append(items, notice)
			}
			ev.Details["tipo_ricevuta"] = string(tx.ReceiptFor(rcpt))
			// The recipient's archivio keeps the busta; its key is the
			// content key of sha256_busta, not this entry's, whose
			// SHA-256 is the ricevuta's.
			if _, err = s.archive(ctx, rcpt, pec.KindBustaTrasporto, tx, m.Raw); err != nil {
				return deferred("archive", err)
			}
		}
		// The mittente's archivio keeps the ricevuta or avviso we sign
		// for it, as it keeps its accettazione: the entry's archive key
		// is that message's.
		if s.ours(tx.Mittente) {
			if ev.ArchiveKey, err = s.archive(ctx, tx.Mittente, b.Kind, tx, b.Message); err != nil {
				return deferred("archive", err)
			}
		}
		events = append(events, ev)
		items = append(items, queue.Item{
			ID:          itemID(string(kind), tx.Identificativo, rcpt),
			Destination: s.destinationOf(tx.Mittente),
			From:        s.g.Address(),
			To:          []string{tx.Mittente},
			Message:     b.Message,
		})
	}
	if err := s.commit(ctx, items, events...); err != nil {
		s.log.Error("ricezione: commit", "identificativo", tx.Identificativo, "err", err)
		return deferred("ledger", err)
	}
	provenPeer(ctx)
	s.log.Info("ricezione: presa in carico", "identificativo", tx.Identificativo, "destinatari", len(rcpts), "gestore_mittente", provider.Name)
	return accepted(tx.Identificativo)
}

// virusFound handles a busta in which the scanner found a virus (RFC 6109
// §3.2.3): no delivery, and one avviso di rilevazione virus per recipient
// to the mittente's gestore.
func (s *Server) virusFound(ctx context.Context, tx *pec.Transaction, provider *igpec.Provider, rcpts []string, virus string, bustaSum [32]byte, details map[string]string) *Outcome {
	var items []queue.Item
	var events []ledger.Event
	for _, rcpt := range rcpts {
		b, err := s.g.RilevazioneVirus(tx, rcpt, provider.MailReceipt, virus)
		if err != nil {
			return s.internal("avviso di rilevazione virus", tx, err)
		}
		ev := event(ledger.KindRilevazioneVirus, tx, s.g.Name(), b.Message, b.MessageID)
		ev.Details["destinatario"] = rcpt
		ev.Details["virus"] = truncate(virus, 256)
		ev.Details["sha256_busta"] = hex.EncodeToString(bustaSum[:])
		withDetails(ev.Details, details)
		events = append(events, ev)
		items = append(items, queue.Item{
			ID:          itemID("rilevazione-virus", tx.Identificativo, rcpt),
			Destination: s.destinationOf(provider.MailReceipt),
			From:        s.g.Address(),
			To:          []string{provider.MailReceipt},
			Message:     b.Message,
		})
	}
	if err := s.commit(ctx, items, events...); err != nil {
		return deferred("ledger", err)
	}
	s.log.Warn("ricezione: virus", "identificativo", tx.Identificativo, "virus", virus)
	return nil
}

// receiveNotice handles a ricevuta or avviso, or a busta di anomalia we
// made ourselves: those signed by another gestore are recorded in the
// ledger, and those addressed to our titolari are put in their mailboxes.
func (s *Server) receiveNotice(ctx context.Context, m *pec.Message, provider *igpec.Provider, rcpts []string, at time.Time, key string) *Outcome {
	var id string
	if m.Daticert != nil {
		id = m.Daticert.Identificativo
	}
	if provider.Name != s.g.Name() {
		done, o := s.recordNotice(ctx, m, provider, at)
		if o != nil {
			return o
		}
		if done {
			return accepted(id)
		}
	}
	for _, r := range rcpts {
		k := key
		if k == "" {
			k = digestKey("notice", m.Raw, r)
		}
		_, err := s.opts.Mailboxes.Deliver(ctx, mailstore.Delivery{Address: r, Message: m.Raw, Key: k + "/" + r, Time: at})
		switch {
		case err == nil:
		case errors.Is(err, mailstore.ErrNoSuchMailbox), errors.Is(err, mailstore.ErrInvalid):
			// The service mailbox, or a titolare who no longer exists
			// (or an address no mailbox can have): the ledger keeps the
			// notice.
			s.log.Info("ricezione: notice for no mailbox", "to", r, "kind", m.Kind)
		case errors.Is(err, mailstore.ErrOverQuota):
			// Never dropped: the sender (or our queue) keeps it and tries
			// again once the titolare has made room. Recipients already
			// served are not served twice (delivery keys).
			s.log.Warn("ricezione: notice for a full mailbox, deferred", "to", r, "kind", m.Kind)
			return outcome(ReasonMailboxBusy, r, err)
		default:
			s.log.Error("ricezione: deliver notice", "to", r, "err", err)
			return deferred("mailbox store", err)
		}
	}
	return accepted(id)
}

// recordNotice records a ricevuta or avviso another gestore sent us. For
// an avviso di rilevazione virus it also emits the avviso di mancata
// consegna per virus to our mittente, which replaces the notice's delivery
// (done is true).
func (s *Server) recordNotice(ctx context.Context, m *pec.Message, provider *igpec.Provider, at time.Time) (done bool, o *Outcome) {
	d := m.Daticert
	if d == nil {
		return false, nil
	}
	if ok, err := s.recorded(ctx, d.Identificativo, m.Raw); err != nil {
		return false, deferred("ledger", err)
	} else if ok {
		return m.Kind == pec.KindRilevazioneVirus, nil
	}
	var kind ledger.Kind
	switch m.Kind {
	case pec.KindPresaInCarico:
		kind = ledger.KindPresaInCarico
	case pec.KindConsegnaCompleta, pec.KindConsegnaBreve, pec.KindConsegnaSintetica:
		kind = ledger.KindAvvenutaConsegna
	case pec.KindMancataConsegna, pec.KindMancataConsegnaVirus:
		kind = ledger.KindErroreConsegna
	case pec.KindRilevazioneVirus:
		kind = ledger.KindRilevazioneVirus
	default:
		return false, nil
	}
	tx := &pec.Transaction{
		Identificativo: d.Identificativo,
		Time:           at,
		Mittente:       d.Mittente,
		Destinatari:    d.Destinatari,
		Subject:        d.Oggetto,
		MessageID:      d.MessageID,
		Receipt:        d.Receipt,
	}
	ev := event(kind, tx, provider.Name, m.Raw, m.Header.MessageID)
	ev.Details["ricevuta_da"] = "gestore"
	ev.Details["data_emissione"] = d.Time.UTC().Format(time.RFC3339)
	if d.Consegna != "" {
		ev.Details["destinatario"] = strings.ToLower(d.Consegna)
	}
	if len(d.Ricezione) > 0 {
		ev.Details["ricezione"] = strings.ToLower(strings.Join(d.Ricezione, " "))
	}
	if d.Errore != "" && d.Errore != daticert.ErroreNessuno {
		ev.Details["errore"] = string(d.Errore)
	}
	if s.ours(d.Mittente) {
		var err error
		if ev.ArchiveKey, err = s.archive(ctx, strings.ToLower(d.Mittente), m.Kind, tx, m.Raw); err != nil {
			return false, deferred("archive", err)
		}
	}
	sanitize(&ev)
	if m.Kind != pec.KindRilevazioneVirus || !s.ours(d.Mittente) {
		if _, err := s.opts.Ledger.Append(ctx, ev); err != nil {
			s.log.Error("ricezione: record notice", "identificativo", d.Identificativo, "err", err)
			return false, deferred("ledger", err)
		}
		provenPeer(ctx)
		return false, nil
	}
	// Avviso di rilevazione virus about a message of ours: the mittente
	// gets the avviso di mancata consegna per virus (RFC 6109 §3.2.4).
	recipient := strings.ToLower(d.Consegna)
	if recipient == "" && len(d.Destinatari) > 0 {
		recipient = d.Destinatari[0].Address
	}
	virus := d.ErroreEsteso
	if virus == "" {
		virus = "virus"
	}
	b, err := s.g.MancataConsegnaVirus(tx, recipient, virus)
	if err != nil {
		return false, s.internal("avviso di mancata consegna per virus", tx, err)
	}
	avviso := event(ledger.KindErroreConsegna, tx, s.g.Name(), b.Message, b.MessageID)
	avviso.Details["destinatario"] = recipient
	avviso.Details["errore"] = string(daticert.ErroreVirus)
	item := queue.Item{
		ID:          itemID("mancata-consegna-virus", tx.Identificativo, recipient),
		Destination: localDestination,
		From:        s.g.Address(),
		To:          []string{strings.ToLower(d.Mittente)},
		Message:     b.Message,
	}
	if err := s.commit(ctx, []queue.Item{item}, ev, avviso); err != nil {
		return false, deferred("ledger", err)
	}
	provenPeer(ctx)
	return true, nil
}

// destinationOf is the queue destination of address.
func (s *Server) destinationOf(address string) string {
	if s.ours(address) {
		return localDestination
	}
	return domainOf(address)
}

// isDestinatario reports whether rcpt (lower-cased) is a destinatario of
// tx, compared byte for byte once lower-cased.
func isDestinatario(tx *pec.Transaction, rcpt string) bool {
	for _, d := range tx.Destinatari {
		if strings.ToLower(strings.TrimSpace(d.Address)) == rcpt {
			return true
		}
	}
	return false
}

// coversAll reports whether the space-separated list holds every address
// of want.
func coversAll(list string, want []string) bool {
	have := map[string]bool{}
	for _, a := range strings.Fields(list) {
		have[strings.ToLower(a)] = true
	}
	for _, w := range want {
		if !have[strings.ToLower(w)] {
			return false
		}
	}
	return true
}

func digestKey(what string, msg []byte, more ...string) string {
	return itemID(what, string(msg), more...)
}

// noticeOfArrival is the ordinary mail that tells a titolare, at the
// ordinary address of their choice, that a busta di trasporto is in their
// mailbox. It carries no content of the message beyond its sender and
// subject.
func (s *Server) noticeOfArrival(tx *pec.Transaction, rcpt, notify string) (queue.Item, error) {
	loc, err := rome.Location()
	if err != nil {
		return queue.Item{}, fmt.Errorf("gestore: avviso di arrivo: %w", err)
	}
	subject := mime.QEncoding.Encode("utf-8", "Nuovo messaggio PEC da "+tx.Mittente)
	body := "Nella casella di posta certificata " + rcpt + " è arrivato un messaggio.\r\n\r\n" +
		"Mittente: " + tx.Mittente + "\r\n" +
		"Oggetto: " + oneLine(tx.Subject) + "\r\n" +
		"Data: " + tx.Time.In(loc).Format("02/01/2006 15:04:05 -0700") + "\r\n" +
		"Identificativo: " + tx.Identificativo + "\r\n\r\n" +
		"Questo è un avviso automatico, non un messaggio di posta certificata.\r\n"
	msg := "From: " + s.g.Address() + "\r\nTo: " + notify + "\r\nSubject: " + subject +
		"\r\nDate: " + tx.Time.Format(time.RFC1123Z) + "\r\nMessage-ID: <avviso." + itemID("arrivo", tx.Identificativo, rcpt)[len("arrivo/"):] + "@" + s.g.Domain() + ">" +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
	return queue.Item{
		ID:          itemID("avviso-arrivo", tx.Identificativo, rcpt),
		Destination: s.destinationOf(notify),
		Ref:         notEvidence,
		From:        s.g.Address(),
		To:          []string{notify},
		Message:     []byte(msg),
	}, nil
}

// opaqueFields are the header fields of a message that opaqueOriginal
// keeps, the first of each, so that the busta di anomalia still says who
// sent what.
var opaqueFields = []string{"From", "To", "Cc", "Subject", "Date", "Message-ID"}

// opaqueOriginal returns a small message that carries msg whole, base64
// encoded, as an application/octet-stream attachment
// (messaggio-originale.eml), under a few of its header fields. Parsers
// (ours included) never descend into it: a busta di anomalia around it
// parses whatever msg holds, and its recipient still gets the message,
// byte for byte, to open at will.
func opaqueOriginal(msg []byte) []byte {
	var b bytes.Buffer
	if hm, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		for _, name := range opaqueFields {
			v := hm.Header.Get(name)
			if v == "" || len(v) > 900 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				continue
			}
			b.WriteString(name + ": " + v + "\r\n")
		}
	}
	b.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream; name=\"messaggio-originale.eml\"\r\n" +
		"Content-Disposition: attachment; filename=\"messaggio-originale.eml\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(msg)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// received returns the Received field (RFC 5321 §4.4) of a message
// arriving now on c for rcpts, authenticated or not. The ledger's hashes
// and the archivio are of the message as it arrived, without it: it is
// added only where the message is stored for a titolare (the original in
// the busta di trasporto, the mailbox).
func (s *Server) received(ctx context.Context, c *smtp.Conn, authenticated bool, rcpts []string) string {
	r := pec.Received{By: s.opts.Hostname, With: "ESMTP", ID: pec.NewQueueID(), Time: s.now()}
	if c != nil {
		if _, ok := c.TLSConnectionState(); ok {
			r.With += "S"
		}
		// The address literal only, no reverse DNS (RFC 5321 §4.4 makes
		// it optional): a slow or hostile resolver must not delay every
		// message, and the trace must not depend on the resolver's day.
		r.Helo, r.RemoteIP = c.Hostname(), remoteIP(c)
	}
	if authenticated {
		r.With += "A"
	}
	if len(rcpts) == 1 {
		r.For = rcpts[0]
	}
	return r.Field()
}
