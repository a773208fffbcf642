package gestore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailaddr"
	"github.com/custode/custode/pec/queue"
)

// Refusals after MAIL FROM are recorded under one rule:
//
// Every reply 4xx or 5xx that a session of the punto di accesso or of the
// punto di ricezione gives to MAIL, RCPT or DATA (the end of DATA
// included) is recorded in the ledger, with its code and its text, in an
// entry of kind ledger.KindRefusal. The refusals of one transaction, from
// MAIL to the end of DATA, RSET, the next MAIL or the end of the session,
// make one entry, written when the transaction ends; for a refused DATA,
// before the reply. An avviso di non accettazione or a busta di anomalia
// has its own entry besides. The entry names the sender (Mittente: the
// authenticated titolare at the punto di accesso, whose reverse path, if
// it differs, is in Details "mail_from"; the reverse path at the punto di
// ricezione), the recipients concerned (Destinatari: the refused ones,
// or all of the transaction's for a refused DATA), and in Details the
// point ("accesso" or "ricezione"), the first reply ("codice", "motivo")
// and the Reason of its outcome ("causa", as the avviso's entry has it),
// how many there were ("rifiuti"), the first maxRefusalLines of them
// ("elenco") and the client's IP address ("remoto"). So that no client
// can grow the ledger without bound, at most refusalBurst entries are
// written at once and refusalRate a second after that; the transactions
// beyond are counted, and their count ("soppressi") is written in the
// next entry. The replies that go-smtp gives by itself (syntax errors,
// commands out of sequence, the protocol limit on RCPT) are not the
// session's and are not recorded.
//
// A queued message that the gestore gives up (see deliver) is recorded
// the same way, Details "punto" being "coda".
const (
	// refusalBurst is how many refusal entries may be written at once.
	refusalBurst = 600
	// refusalRate is how many refusal entries a second may be written
	// after a burst: a constant rate whatever a client does.
	refusalRate = 10
	// maxRefusalLines bounds the refusals listed in one entry.
	maxRefusalLines = 20
)

// refusalLimiter is the token bucket that bounds the refusal entries.
type refusalLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// take reports whether an entry may be written at now, and how many were
// suppressed before it (reset when it may).
func (l *refusalLimiter) take(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens, l.last = refusalBurst, now
	}
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(refusalBurst, l.tokens+d.Seconds()*refusalRate)
		l.last = now
	}
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// refusedReply is one reply the recorder saw.
type refusedReply struct {
	command string // MAIL, RCPT or DATA
	arg     string // the address of MAIL or RCPT
	err     error  // the reply (see publicError)
	reason  Reason // the outcome's, if the refusal was the engine's
}

// recordingSession wraps the smtp.Session of a point and records its
// refusals (see the rule above). It is where the outcomes of the engine
// become replies (see reply): an error that is not an outcome, and could
// carry the text of an internal error (socket addresses, file names),
// becomes a generic one.
type recordingSession struct {
	smtp.Session
	s      *Server
	punto  string
	remote string

	// mu guards the transaction: go-smtp may call Logout (when the
	// server closes) while a command is under way.
	mu      sync.Mutex
	from    string
	rcpts   []string // accepted
	refused []refusedReply
}

// recording returns inner wrapped by a recordingSession of the point
// punto, for the client of c.
// A session that authenticates keeps doing so.
func (s *Server) recording(punto string, c *smtp.Conn, inner smtp.Session) smtp.Session {
	r := &recordingSession{Session: inner, s: s, punto: punto, remote: remoteIP(c)}
	if a, ok := inner.(smtp.AuthSession); ok {
		return &recordingAuthSession{recordingSession: r, auth: a}
	}
	return r
}

// recordingAuthSession is a recordingSession of a session that
// authenticates.
type recordingAuthSession struct {
	*recordingSession
	auth smtp.AuthSession
}

func (r *recordingAuthSession) AuthMechanisms() []string { return r.auth.AuthMechanisms() }

func (r *recordingAuthSession) Auth(mech string) (sasl.Server, error) { return r.auth.Auth(mech) }

func (r *recordingSession) note(command, arg string, err error) error {
	se := publicError(err)
	var reason Reason
	if o := (*Outcome)(nil); errors.As(err, &o) {
		reason = o.Reason
	} else {
		reason = fromSessionError(err).Reason
	}
	r.mu.Lock()
	r.refused = append(r.refused, refusedReply{command: command, arg: arg, err: se, reason: reason})
	r.mu.Unlock()
	return se
}

// isSuccess reports whether err is an outcome of success: a message
// accepted, which the reply states with its identificativo.
func isSuccess(err error) bool {
	var o *Outcome
	return errors.As(err, &o) && o.Kind() == Success
}

func (r *recordingSession) Mail(from string, opts *smtp.MailOptions) error {
	r.flush()
	err := r.Session.Mail(from, opts)
	if o := (*Outcome)(nil); errors.As(err, &o) && o.Reason == ReasonAuthRequired {
		// Not a transaction: no MAIL FROM was taken.
		return publicError(err)
	}
	r.mu.Lock()
	r.from = from
	r.mu.Unlock()
	if err != nil {
		err = r.note("MAIL", from, err)
		r.flush()
		return err
	}
	return nil
}

func (r *recordingSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := r.Session.Rcpt(to, opts); err != nil {
		return r.note("RCPT", to, err)
	}
	r.mu.Lock()
	r.rcpts = append(r.rcpts, to)
	r.mu.Unlock()
	return nil
}

func (r *recordingSession) Data(rd io.Reader) error {
	err := r.Session.Data(rd)
	if err != nil && !isSuccess(err) {
		err = r.note("DATA", "", err)
		r.flush()
		return err
	}
	r.flush()
	if err != nil {
		return publicError(err) // 250 with the identificativo
	}
	return nil
}

// dataRefusalHandler is a session that acts on a refusal of its message
// made before it saw it (see accessoSession.refusedData).
type dataRefusalHandler interface {
	refusedData(o *Outcome) *Outcome
}

// noteDataRefusal records a refusal of DATA made around the session,
// before it saw the message, and ends the transaction. The session may
// act on it first: a message too large at the punto di accesso gets its
// avviso di non accettazione.
func (r *recordingSession) noteDataRefusal(err error) error {
	if h, ok := r.Session.(dataRefusalHandler); ok {
		err = h.refusedData(fromSessionError(err))
	}
	err = r.note("DATA", "", err)
	r.flush()
	return err
}

func (r *recordingSession) Reset() {
	r.flush()
	r.Session.Reset()
}

func (r *recordingSession) Logout() error {
	r.flush()
	return r.Session.Logout()
}

// flush ends the transaction: its refusals, if any, are recorded.
func (r *recordingSession) flush() {
	r.mu.Lock()
	refused, from, accepted := r.refused, r.from, r.rcpts
	r.refused, r.from, r.rcpts = nil, "", nil
	r.mu.Unlock()
	if len(refused) == 0 {
		return
	}
	var rcpts []string
	for _, x := range refused {
		switch x.command {
		case "RCPT":
			rcpts = append(rcpts, x.arg)
		case "DATA":
			rcpts = append(rcpts, accepted...)
		}
	}
	lines := make([]string, 0, min(len(refused), maxRefusalLines))
	for i, x := range refused {
		if i == maxRefusalLines {
			break
		}
		l := x.command
		if x.arg != "" {
			l += " <" + x.arg + ">"
		}
		lines = append(lines, l+": "+replyText(x.err))
	}
	details := map[string]string{
		"punto":   r.punto,
		"codice":  replyCode(refused[0].err),
		"causa":   string(refused[0].reason),
		"motivo":  truncate(oneLine(replyMessage(refused[0].err)), 1024),
		"rifiuti": strconv.Itoa(len(refused)),
		"elenco":  strings.Join(lines, "\n"),
	}
	if r.remote != "" {
		details["remoto"] = r.remote
	}
	if a, ok := r.Session.(interface{ authenticated() string }); ok {
		if user := a.authenticated(); user != "" {
			if !mailaddr.Same(user, from) {
				details["mail_from"] = from
			}
			from = user
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.s.opts.Timeout)
	defer cancel()
	r.s.recordRefusal(ctx, from, rcpts, nil, "", details)
}

// recordRefusal appends a refusal entry, unless the limiter suppresses it
// (SMTP refusals only: a queue drop, msg not nil, is always written). It
// reports whether the ledger holds it.
func (s *Server) recordRefusal(ctx context.Context, from string, rcpts []string, msg []byte, identificativo string, details map[string]string) bool {
	if msg == nil {
		ok, suppressed := s.refusals.take(s.now())
		if !ok {
			return false
		}
		if suppressed > 0 {
			details["soppressi"] = strconv.Itoa(suppressed)
		}
	}
	ev := ledger.Event{
		Kind:           ledger.KindRefusal,
		Identificativo: identificativo,
		Time:           s.now().UTC(),
		Mittente:       from,
		Gestore:        s.g.Name(),
		Details:        details,
	}
	if msg != nil {
		sum := sha256.Sum256(msg)
		ev.SHA256 = sum[:]
	}
	for _, a := range rcpts {
		if len(ev.Destinatari) == ledger.MaxRecipients {
			break
		}
		tipo := ledger.TipoEsterno
		if s.ours(a) || s.opts.Index.IsManagedDomain(domainOf(a)) {
			tipo = ledger.TipoCertificato
		}
		ev.Destinatari = append(ev.Destinatari, ledger.Recipient{Address: a, Tipo: tipo})
	}
	for k, v := range ev.Details {
		if v == "" {
			delete(ev.Details, k)
		}
	}
	sanitize(&ev)
	if _, err := s.opts.Ledger.Append(ctx, ev); err != nil {
		s.log.Error("gestore: record refusal", "punto", details["punto"], "err", err)
		return false
	}
	return true
}

// recordDrop records that the queue gives up item it (see deliver), for
// err. It returns an error if the ledger could not take the entry: the
// item must then stay queued, so that nothing is dropped silently.
func (s *Server) recordDrop(ctx context.Context, it queue.Item, err error) error {
	id := it.Ref
	if id == notEvidence {
		id = ""
	}
	details := map[string]string{
		"punto":        "coda",
		"codice":       "drop",
		"motivo":       truncate(oneLine(err.Error()), 1024),
		"elemento":     it.ID,
		"destinazione": it.Destination,
		"tentativi":    strconv.Itoa(it.Attempts + 1),
		"accodato":     it.Enqueued.UTC().Format(time.RFC3339Nano),
	}
	from := it.From
	if !s.recordRefusal(ctx, from, it.To, it.Message, id, details) {
		return fmt.Errorf("gestore: the ledger did not record the drop of %s", it.ID)
	}
	return nil
}

// authenticated returns the mailbox the session authenticated as, or "".
func (a *accessoSession) authenticated() string { return a.user }
