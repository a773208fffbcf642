package gestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/mailaddr"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/queue"
)

// accessoBackend is the punto di accesso (RFC 6109 §3.1): titolari submit
// their messages here.
type accessoBackend struct {
	s           *Server
	implicitTLS bool
}

func (b *accessoBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.recording("accesso", c, &accessoSession{s: b.s, conn: c}), nil
}

type accessoSession struct {
	s     *Server
	conn  *smtp.Conn
	user  string // the authenticated mailbox
	from  string
	rcpts []string
}

func remoteIP(c *smtp.Conn) string {
	if c == nil || c.Conn() == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(c.Conn().RemoteAddr().String())
	if err != nil {
		return c.Conn().RemoteAddr().String()
	}
	return host
}

func (a *accessoSession) AuthMechanisms() []string {
	return []string{sasl.Plain, sasl.Login}
}

func (a *accessoSession) Auth(mech string) (sasl.Server, error) {
	check := func(username, password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.Timeout)
		defer cancel()
		// No strings.ToLower: it folds the Kelvin sign to k. The store
		// canonicalises (mailaddr) and refuses what has no canonical form.
		user := strings.TrimSpace(username)
		err := a.s.opts.Mailboxes.Login(ctx, mailstore.LoginAttempt{Service: mailstore.ServiceSMTP, Address: user, Password: password, Remote: remoteIP(a.conn)})
		var te *mailstore.ThrottledError
		switch {
		case err == nil:
			a.user, _ = mailaddr.Canonical(user) // it has one: the store accepted it
			return nil
		case errors.As(err, &te):
			a.s.log.Warn("accesso: login throttled", "user", user, "remote", remoteIP(a.conn), "retry_after", te.RetryAfter)
			return reply(outcome(ReasonAuthThrottled, strconv.Itoa(int((te.RetryAfter+time.Second-1)/time.Second)), err))
		case errors.Is(err, mailstore.ErrAuthFailed):
			a.s.log.Info("accesso: login failed", "user", user, "remote", remoteIP(a.conn))
			return reply(outcome(ReasonAuthFailed, "", err))
		default:
			a.s.log.Error("accesso: login", "user", user, "err", err)
			return reply(outcome(ReasonAuthUnavailable, "", err))
		}
	}
	switch mech {
	case sasl.Plain:
		return authReplies{sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				a.s.log.Info("accesso: login with another identity", "user", username, "remote", remoteIP(a.conn))
				return reply(outcome(ReasonAuthFailed, "", errors.New("the identity is not the username")))
			}
			return check(username, password)
		})}, nil
	case sasl.Login:
		return authReplies{&loginServer{check: check}}, nil
	}
	return nil, reply(outcome(ReasonAuthMechanism, mech, nil))
}

// authReplies makes every error of a SASL exchange a reply of ours: a
// malformed exchange fails the authentication (535 5.7.8), instead of
// go-smtp's 454 with the mechanism's own text.
type authReplies struct{ sasl.Server }

func (a authReplies) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := a.Server.Next(response)
	if err != nil {
		err = authError(err)
	}
	return challenge, done, err
}

func (a *accessoSession) Mail(from string, _ *smtp.MailOptions) error {
	if a.user == "" {
		return outcome(ReasonAuthRequired, "", nil)
	}
	// a.user is canonical (mailaddr), as Authenticate accepted it; the
	// reverse path must be the same mailbox byte for byte in that form:
	// no Unicode folding, trailing dot or subaddress.
	if c, err := mailaddr.Canonical(from); err != nil || c != a.user {
		return outcome(ReasonReversePath, a.user, err)
	}
	a.from = a.user
	return nil
}

func (a *accessoSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if a.from == "" {
		return outcome(ReasonMailFirst, "", nil)
	}
	addr, err := mail.ParseAddress("<" + to + ">")
	if err != nil || addr.Address != to || domainOf(to) == "" {
		return outcome(ReasonRecipientSyntax, to, err)
	}
	a.rcpts = append(a.rcpts, strings.ToLower(to))
	return nil
}

func (a *accessoSession) Data(r io.Reader) error {
	if a.from == "" || len(a.rcpts) == 0 {
		return outcome(ReasonRcptFirst, "", nil)
	}
	msg, err := readBody(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.Timeout)
	defer cancel()
	ctx = mailstore.WithEnvelope(ctx, mailstore.Envelope{ReturnPath: a.from, Trace: a.s.received(ctx, a.conn, true, a.rcpts)})
	return a.s.accept(ctx, a.from, a.rcpts, msg)
}

// refusedData is called when the message of the transaction was refused
// before the engine saw it (see dataRefusalHandler). A message over the
// size limit gets the same treatment as one the formal checks find too
// large: an avviso di non accettazione to the titolare, from the
// envelope alone, since the message was not kept.
func (a *accessoSession) refusedData(o *Outcome) *Outcome {
	if o.Reason != ReasonTooLarge || a.from == "" || len(a.rcpts) == 0 {
		return o
	}
	var head []byte
	if u := (*unreadMessage)(nil); errors.As(o.Detail, &u) {
		head = u.head
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.Timeout)
	defer cancel()
	return a.s.refuseEnvelope(ctx, a.from, a.rcpts, head, a.s.tooLarge(o.Detail))
}

func (a *accessoSession) Reset() {
	a.from = ""
	a.rcpts = nil
}

func (a *accessoSession) Logout() error { return nil }

// accept runs the punto di accesso on one submitted message: the formal
// checks, the virus scan, then the ricevuta di accettazione and the busta
// di trasporto (or the avviso di non accettazione), queued and recorded in
// the ledger before it returns. It never returns nil: ReasonOK with the
// identificativo when the message is accepted.
func (s *Server) accept(ctx context.Context, from string, rcpts []string, msg []byte) *Outcome {
	at := s.now()
	env := pec.Envelope{Mittente: from}
	if e, ok := mailstore.EnvelopeFrom(ctx); ok {
		env.Trace = e.Trace // our Received, at the top of the original
	}
	for _, r := range rcpts {
		tipo, err := s.opts.Index.RecipientTipo(r)
		if err != nil {
			return outcome(ReasonBadRecipient, r, err)
		}
		env.Destinatari = append(env.Destinatari, daticert.Destinatario{Address: r, Tipo: tipo})
	}
	tx, err := s.g.NewTransaction(msg, env, at)
	if err != nil {
		// The header cannot be read: still a transaction, with what the
		// envelope says, so that the avviso can be sent and logged.
		return s.refuseEnvelope(ctx, from, rcpts, nil, outcome(ReasonUnreadable, "", err))
	}
	if o := s.formalCheck(msg, env); o != nil {
		return s.refuse(ctx, tx, o)
	}
	if s.opts.Scanner != nil {
		res, err := s.opts.Scanner.Scan(ctx, msg)
		if err != nil {
			s.log.Error("accesso: virus scan", "identificativo", tx.Identificativo, "err", err)
			return deferred("virus scanner unavailable", err)
		}
		if res.Infected {
			q, err := s.quarantine(ctx, tx, pointAccesso, res.Virus, msg)
			if err != nil {
				return deferred("quarantine", err)
			}
			return s.refuseWith(ctx, tx, outcome(ReasonVirus, res.Virus, nil), q)
		}
	}

	acc, err := s.g.Accettazione(tx)
	if err != nil {
		return s.internal("accettazione", tx, err)
	}
	busta, err := s.g.BustaTrasporto(tx)
	if err != nil {
		return s.internal("busta di trasporto", tx, err)
	}
	// Every gestore, ourselves included, must be able to read the busta
	// back: a MIME structure beyond what pec.Parse takes (nested too deep,
	// too many parts) fails the formal checks.
	if _, err := pec.Parse(busta.Message, pec.ParseOptions{}); err != nil {
		return s.refuse(ctx, tx, outcome(ReasonStructure, "", err))
	}
	items := []queue.Item{{
		ID:          itemID("accettazione", tx.Identificativo),
		Destination: localDestination,
		From:        s.g.Address(),
		To:          []string{tx.Mittente},
		Message:     acc.Message,
	}}
	byDest := map[string][]string{}
	var dests []string
	for _, d := range tx.Destinatari {
		dest := localDestination
		if !s.ours(d.Address) {
			dest = domainOf(d.Address)
		}
		if byDest[dest] == nil {
			dests = append(dests, dest)
		}
		byDest[dest] = append(byDest[dest], d.Address)
	}
	for _, dest := range dests {
		items = append(items, queue.Item{
			ID:          itemID("busta", tx.Identificativo, dest),
			Destination: dest,
			From:        s.g.Address(),
			To:          byDest[dest],
			Message:     busta.Message,
		})
	}
	accEv := event(ledger.KindAccettazione, tx, s.g.Name(), acc.Message, acc.MessageID)
	bustaEv := event(ledger.KindPostaCertificata, tx, s.g.Name(), busta.Message, busta.MessageID)
	if accEv.ArchiveKey, err = s.archive(ctx, tx.Mittente, acc.Kind, tx, acc.Message); err != nil {
		return deferred("archive", err)
	}
	if bustaEv.ArchiveKey, err = s.archive(ctx, tx.Mittente, busta.Kind, tx, busta.Message); err != nil {
		return deferred("archive", err)
	}
	if err := s.commit(ctx, items, accEv, bustaEv); err != nil {
		s.log.Error("accesso: commit", "identificativo", tx.Identificativo, "err", err)
		return deferred("ledger", err)
	}
	s.log.Info("accesso: accettazione", "identificativo", tx.Identificativo, "mittente", tx.Mittente, "destinatari", len(tx.Destinatari))
	return accepted(tx.Identificativo)
}

// tooLarge is the outcome of a message over the size limit, whichever
// check found it: the formal check of size times recipients, or the
// limit of a message's size while it was read. Both are the same rule:
// the size of the message times the number of its recipients is at most
// Options.MaxSize (by default 30 MiB, 31,457,280 bytes), a message of one
// recipient being at most MaxSize itself.
func (s *Server) tooLarge(detail error) *Outcome {
	return outcome(ReasonTooLarge, strconv.FormatInt(s.opts.MaxSize, 10), detail)
}

// refuseEnvelope sends the avviso di non accettazione for o of a message
// the gestore could not read or did not keep: the transaction is made of
// the envelope, and of the Subject of head (the message's first bytes,
// when they hold its header).
func (s *Server) refuseEnvelope(ctx context.Context, from string, rcpts []string, head []byte, o *Outcome) *Outcome {
	at := s.now()
	id, err := s.g.NewMsgID(at)
	if err != nil {
		return deferred("identifier", err)
	}
	tx := &pec.Transaction{Identificativo: id, Time: at, Mittente: from, Subject: subjectOf(head)}
	for _, r := range rcpts {
		tipo, err := s.opts.Index.RecipientTipo(r)
		if err != nil {
			tipo = daticert.DestinatarioEsterno
		}
		tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Address: r, Tipo: tipo})
	}
	return s.refuse(ctx, tx, o)
}

// refuse sends the avviso di non accettazione for the reason o gives (a
// formal check, or a virus) and returns o, with the identificativo, once
// the avviso is queued and recorded. The avviso states o's Italian
// sentence; its technical detail is only logged.
func (s *Server) refuse(ctx context.Context, tx *pec.Transaction, o *Outcome) *Outcome {
	return s.refuseWith(ctx, tx, o, nil)
}

// refuseWith is refuse, with details added to the ledger entry (the
// quarantine's key and digest, for a virus).
func (s *Server) refuseWith(ctx context.Context, tx *pec.Transaction, o *Outcome, details map[string]string) *Outcome {
	var (
		b   *pec.Built
		err error
	)
	virus := o.Reason == ReasonVirus
	if virus {
		b, err = s.g.NonAccettazioneVirus(tx, o.Subject)
	} else {
		b, err = s.g.NonAccettazione(tx, o.Testo)
	}
	if err != nil {
		return s.internal("avviso di non accettazione", tx, err)
	}
	ev := event(ledger.KindNonAccettazione, tx, s.g.Name(), b.Message, b.MessageID)
	ev.Details["causa"] = string(o.Reason)
	if virus {
		ev.Details["errore"] = string(daticert.ErroreVirus)
		ev.Details["virus"] = truncate(o.Subject, 256)
	} else {
		ev.Details["errore"] = string(daticert.ErroreAltro)
		ev.Details["errore_esteso"] = truncate(o.Testo, 1024)
	}
	withDetails(ev.Details, details)
	if ev.ArchiveKey, err = s.archive(ctx, tx.Mittente, b.Kind, tx, b.Message); err != nil {
		return deferred("archive", err)
	}
	item := queue.Item{
		ID:          itemID("non-accettazione", tx.Identificativo),
		Destination: localDestination,
		From:        s.g.Address(),
		To:          []string{tx.Mittente},
		Message:     b.Message,
	}
	if err := s.commit(ctx, []queue.Item{item}, ev); err != nil {
		s.log.Error("accesso: commit non accettazione", "identificativo", tx.Identificativo, "err", err)
		return deferred("ledger", err)
	}
	s.log.Info("accesso: non accettazione", "identificativo", tx.Identificativo, "causa", o.Reason, "subject", o.Subject, "detail", o.Detail)
	o.Identificativo = tx.Identificativo
	return o
}

// subjectOf returns the decoded Subject of the header at the start of
// head, one line of printable text, or "" if head holds no whole header.
func subjectOf(head []byte) string {
	if len(head) == 0 {
		return ""
	}
	m, err := mail.ReadMessage(bytes.NewReader(head))
	if err != nil {
		return ""
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		subj = m.Header.Get("Subject")
	}
	subj = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, subj)
	return truncate(oneLine(subj), 900)
}

// internal is the outcome of a failure to build what a step emits.
func (s *Server) internal(what string, tx *pec.Transaction, err error) *Outcome {
	s.log.Error("gestore: build "+what, "identificativo", tx.Identificativo, "err", err)
	return outcome(ReasonLocal, what, err)
}

// formalCheck performs the formal checks of RFC 6109 §3.1.1 and returns
// why the message fails them, or nil.
func (s *Server) formalCheck(msg []byte, env pec.Envelope) *Outcome {
	if len(env.Destinatari) > s.opts.MaxRecipients {
		return outcome(ReasonTooManyRecipients, strconv.Itoa(s.opts.MaxRecipients), nil)
	}
	if total := int64(len(msg)) * int64(len(env.Destinatari)); total > s.opts.MaxSize {
		return s.tooLarge(fmt.Errorf("%d bytes times %d recipients is %d bytes", len(msg), len(env.Destinatari), total))
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return outcome(ReasonUnreadable, "", err)
	}
	h := m.Header
	if _, ok := h["Bcc"]; ok {
		return outcome(ReasonBcc, "", nil)
	}
	// Authorship: one From field, naming the mittente alone, and a Sender
	// field, if any, naming the mittente too; a second From or a Sender
	// naming anybody else would show another titolare as the author.
	if len(h["From"]) != 1 {
		return outcome(ReasonFromCount, "", nil)
	}
	from, err := mail.ParseAddressList(h.Get("From"))
	if err != nil || len(from) != 1 {
		return outcome(ReasonFromAddresses, "", err)
	}
	if !mailaddr.Same(from[0].Address, env.Mittente) {
		return outcome(ReasonFromMismatch, from[0].Address, nil)
	}
	if senders, ok := h["Sender"]; ok {
		if len(senders) != 1 {
			return outcome(ReasonSenderCount, "", nil)
		}
		sender, err := mail.ParseAddress(senders[0])
		if err != nil {
			return outcome(ReasonSenderInvalid, "", err)
		}
		if !mailaddr.Same(sender.Address, env.Mittente) {
			return outcome(ReasonSenderMismatch, sender.Address, nil)
		}
	}
	listed := map[string]bool{}
	for _, field := range []struct {
		name   string
		reason Reason
	}{{"To", ReasonToInvalid}, {"Cc", ReasonCcInvalid}} {
		if h.Get(field.name) == "" {
			continue
		}
		list, err := mail.ParseAddressList(h.Get(field.name))
		if err != nil {
			return outcome(field.reason, "", err)
		}
		for _, a := range list {
			listed[strings.ToLower(a.Address)] = true
		}
	}
	if h.Get("To") == "" {
		return outcome(ReasonNoTo, "", nil)
	}
	for _, d := range env.Destinatari {
		if !listed[strings.ToLower(d.Address)] {
			return outcome(ReasonNotListed, d.Address, nil)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// loginServer is the server side of the obsolete but widespread LOGIN SASL
// mechanism, which many mail clients still use.
type loginServer struct {
	check    func(username, password string) error
	step     int
	username string
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response: the username
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, errors.New("unexpected client response")
}
