package gestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"syscall"
	"time"

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
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
				Message: fmt.Sprintf("Too many failed logins from your address, try again in %d seconds", int((te.RetryAfter+time.Second-1)/time.Second))}
		case errors.Is(err, mailstore.ErrAuthFailed):
			a.s.log.Info("accesso: login failed", "user", user, "remote", remoteIP(a.conn))
			return smtp.ErrAuthFailed
		default:
			a.s.log.Error("accesso: login", "user", user, "err", err)
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
		}
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return errors.New("identity must be the username")
			}
			return check(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (a *accessoSession) Mail(from string, _ *smtp.MailOptions) error {
	if a.user == "" {
		return smtp.ErrAuthRequired
	}
	// a.user is canonical (mailaddr), as Authenticate accepted it; the
	// reverse path must be the same mailbox byte for byte in that form:
	// no Unicode folding, trailing dot or subaddress.
	if c, err := mailaddr.Canonical(from); err != nil || c != a.user {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "The reverse path must be the authenticated mailbox " + a.user}
	}
	a.from = a.user
	return nil
}

func (a *accessoSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if a.from == "" {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	addr, err := mail.ParseAddress("<" + to + ">")
	if err != nil || addr.Address != to || domainOf(to) == "" {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	}
	a.rcpts = append(a.rcpts, strings.ToLower(to))
	return nil
}

func (a *accessoSession) Data(r io.Reader) error {
	if a.from == "" || len(a.rcpts) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL and RCPT first"}
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

func (a *accessoSession) Reset() {
	a.from = ""
	a.rcpts = nil
}

func (a *accessoSession) Logout() error { return nil }

// deferred is the reply when something the server depends on is down,
// err being how it failed: the client keeps the message and tries again.
// A disk that is full, or nearly (the ledger and the mailbox store keep a
// reserve), is 452 4.3.1, as RFC 3463 names it.
func deferred(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
			Message: "Insufficient system storage (" + what + "), try again later"}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure (" + what + "), try again later"}
}

// accept runs the punto di accesso on one submitted message: the formal
// checks, the virus scan, then the ricevuta di accettazione and the busta
// di trasporto (or the avviso di non accettazione), queued and recorded in
// the ledger before it returns nil, which go-smtp answers with 250.
func (s *Server) accept(ctx context.Context, from string, rcpts []string, msg []byte) error {
	at := s.now()
	env := pec.Envelope{Mittente: from}
	if e, ok := mailstore.EnvelopeFrom(ctx); ok {
		env.Trace = e.Trace // our Received, at the top of the original
	}
	for _, r := range rcpts {
		tipo, err := s.opts.Index.RecipientTipo(r)
		if err != nil {
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient " + r}
		}
		env.Destinatari = append(env.Destinatari, daticert.Destinatario{Address: r, Tipo: tipo})
	}
	tx, err := s.g.NewTransaction(msg, env, at)
	if err != nil {
		// The header cannot be read: still a transaction, with what the
		// envelope says, so that the avviso can be sent and logged.
		id, idErr := s.g.NewMsgID(at)
		if idErr != nil {
			return deferred("identifier", idErr)
		}
		tx = &pec.Transaction{Identificativo: id, Time: at, Mittente: from, Destinatari: env.Destinatari}
		return s.refuse(ctx, tx, "il messaggio non è un messaggio di posta elettronica leggibile ("+err.Error()+")", "")
	}
	if reason := s.formalCheck(msg, env); reason != "" {
		return s.refuse(ctx, tx, reason, "")
	}
	if s.opts.Scanner != nil {
		res, err := s.opts.Scanner.Scan(ctx, msg)
		if err != nil {
			s.log.Error("accesso: virus scan", "identificativo", tx.Identificativo, "err", err)
			return deferred("virus scanner unavailable", err)
		}
		if res.Infected {
			return s.refuse(ctx, tx, "", res.Virus)
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
		return s.refuse(ctx, tx, "la struttura del messaggio non può essere trasportata ("+err.Error()+")", "")
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
	return nil
}

// refuse sends the avviso di non accettazione, for the formal reason
// given or for virus, and answers the client with a permanent error once
// the avviso is queued and recorded.
func (s *Server) refuse(ctx context.Context, tx *pec.Transaction, reason, virus string) error {
	var (
		b   *pec.Built
		err error
	)
	if virus != "" {
		b, err = s.g.NonAccettazioneVirus(tx, virus)
	} else {
		b, err = s.g.NonAccettazione(tx, reason)
	}
	if err != nil {
		return s.internal("avviso di non accettazione", tx, err)
	}
	ev := event(ledger.KindNonAccettazione, tx, s.g.Name(), b.Message, b.MessageID)
	if virus != "" {
		ev.Details["errore"] = string(daticert.ErroreVirus)
		ev.Details["virus"] = truncate(virus, 256)
	} else {
		ev.Details["errore"] = string(daticert.ErroreAltro)
		ev.Details["errore_esteso"] = truncate(reason, 1024)
	}
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
	s.log.Info("accesso: non accettazione", "identificativo", tx.Identificativo, "reason", reason, "virus", virus)
	if virus != "" {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "Non accettazione per virus (" + virus + "): avviso di non accettazione sent, identificativo " + tx.Identificativo}
	}
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Non accettazione: " + oneLine(reason) + "; avviso di non accettazione sent, identificativo " + tx.Identificativo}
}

func (s *Server) internal(what string, tx *pec.Transaction, err error) error {
	s.log.Error("gestore: build "+what, "identificativo", tx.Identificativo, "err", err)
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error building the " + what}
}

// formalCheck performs the formal checks of RFC 6109 §3.1.1 and returns,
// in Italian, why the message fails them, or "".
func (s *Server) formalCheck(msg []byte, env pec.Envelope) string {
	if len(env.Destinatari) > s.opts.MaxRecipients {
		return fmt.Sprintf("il numero di destinatari (%d) supera il limite di %d", len(env.Destinatari), s.opts.MaxRecipients)
	}
	if total := int64(len(msg)) * int64(len(env.Destinatari)); total > s.opts.MaxSize {
		return fmt.Sprintf("la dimensione del messaggio per il numero di destinatari (%d byte) supera il limite di %d byte", total, s.opts.MaxSize)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return "l'intestazione del messaggio non è leggibile"
	}
	h := m.Header
	if _, ok := h["Bcc"]; ok {
		return "il messaggio contiene il campo Bcc, non ammesso"
	}
	// Authorship: one From field, naming the mittente alone, and a Sender
	// field, if any, naming the mittente too; a second From or a Sender
	// naming anybody else would show another titolare as the author.
	if len(h["From"]) != 1 {
		return "il messaggio deve contenere un solo campo From"
	}
	from, err := mail.ParseAddressList(h.Get("From"))
	if err != nil || len(from) != 1 {
		return "il campo From deve contenere un solo indirizzo"
	}
	if !mailaddr.Same(from[0].Address, env.Mittente) {
		return "l'indirizzo del campo From (" + from[0].Address + ") non coincide con il mittente (" + env.Mittente + ")"
	}
	if senders, ok := h["Sender"]; ok {
		if len(senders) != 1 {
			return "il messaggio deve contenere al più un campo Sender"
		}
		sender, err := mail.ParseAddress(senders[0])
		if err != nil {
			return "il campo Sender non è valido"
		}
		if !mailaddr.Same(sender.Address, env.Mittente) {
			return "l'indirizzo del campo Sender (" + sender.Address + ") non coincide con il mittente (" + env.Mittente + ")"
		}
	}
	listed := map[string]bool{}
	for _, field := range []string{"To", "Cc"} {
		if h.Get(field) == "" {
			continue
		}
		list, err := mail.ParseAddressList(h.Get(field))
		if err != nil {
			return "il campo " + field + " non è valido"
		}
		for _, a := range list {
			listed[strings.ToLower(a.Address)] = true
		}
	}
	if h.Get("To") == "" {
		return "il campo To è assente"
	}
	for _, d := range env.Destinatari {
		if !listed[strings.ToLower(d.Address)] {
			return "il destinatario " + d.Address + " non compare nei campi To o Cc"
		}
	}
	return ""
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
