package gestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/queue"
)

// localDestination is the queue destination of messages for our own
// domains: they go through the punto di ricezione in process.
const localDestination = "local"

// itemID names a queue item: what it is and a digest of the transaction
// and destination, so that a retried processing of the same transaction
// finds its earlier attempt.
func itemID(what, identificativo string, more ...string) string {
	h := sha256.New()
	h.Write([]byte(identificativo))
	for _, m := range more {
		h.Write([]byte{0})
		h.Write([]byte(m))
	}
	return what + "/" + hex.EncodeToString(h.Sum(nil)[:20])
}

// commit makes a processing step durable: the messages it emits are queued
// (held back by deliver until the ledger has them), then its events are
// appended to the ledger. Only when commit returns nil may the server
// answer 250. Items left by an earlier run's attempt at the same step,
// which was never acknowledged, are replaced; a step that another commit
// of this run holds fails with errBusy.
func (s *Server) commit(ctx context.Context, items []queue.Item, events ...ledger.Event) error {
	for i := range events {
		sanitize(&events[i])
	}
	ids := make([]string, len(items))
	for i := range items {
		if items[i].Ref == "" {
			items[i].Ref = events[0].Identificativo
		}
		ids[i] = items[i].ID
	}
	c, err := s.hold(ids)
	if err != nil {
		return err
	}
	err = s.opts.Queue.Enqueue(ctx, items...)
	if errors.Is(err, queue.ErrExists) {
		for _, it := range items {
			if err := s.opts.Queue.Remove(ctx, it.ID); err != nil && !errors.Is(err, queue.ErrNotFound) {
				s.release(ids, c, false)
				return err
			}
		}
		err = s.opts.Queue.Enqueue(ctx, items...)
	}
	if err != nil {
		s.release(ids, c, false)
		return err
	}
	if _, err := s.opts.Ledger.Append(ctx, events...); err != nil {
		for _, it := range items {
			if rmErr := s.opts.Queue.Remove(ctx, it.ID); rmErr != nil {
				s.log.Error("gestore: unqueue after failed ledger append", "item", it.ID, "err", rmErr)
			}
		}
		s.release(ids, c, false)
		return err
	}
	s.release(ids, c, true)
	return nil
}

// commitState tells deliveries waiting on a commit how it ended.
type commitState struct {
	done     chan struct{}
	recorded bool
}

// errBusy is the error of a commit of items that another commit, under
// way or done in this run, already holds: the same step running twice at
// once (a sender retrying while its first attempt is still processed).
var errBusy = errors.New("the same messages are being committed already")

// hold marks the items ids as being committed: deliver waits for the
// commit's end instead of looking in the ledger. It fails with errBusy if
// another commit of this run holds one of them.
func (s *Server) hold(ids []string) (*commitState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.committing[id] != nil || s.committed[id] {
			return nil, fmt.Errorf("gestore: commit %s: %w", id, errBusy)
		}
	}
	c := &commitState{done: make(chan struct{})}
	for _, id := range ids {
		s.committing[id] = c
	}
	return c, nil
}

// release ends the commit of ids: recorded says whether the ledger holds
// their events.
func (s *Server) release(ids []string, c *commitState, recorded bool) {
	s.mu.Lock()
	for _, id := range ids {
		if s.committing[id] == c {
			delete(s.committing, id)
		}
		if recorded {
			s.committed[id] = true
		}
	}
	s.mu.Unlock()
	c.recorded = recorded
	close(c.done)
}

// isRecorded reports whether the message of it may be sent: the ledger
// holds the event that emitted it. It waits for a commit under way.
func (s *Server) isRecorded(ctx context.Context, it queue.Item) (bool, error) {
	if it.Ref == notEvidence {
		return true, nil
	}
	s.mu.Lock()
	c, committing := s.committing[it.ID]
	done := s.committed[it.ID]
	s.mu.Unlock()
	if committing {
		select {
		case <-c.done:
			return c.recorded, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if done {
		return true, nil
	}
	// Queued by an earlier run of the server, or by this one before a
	// commit failed: the ledger decides.
	return s.recorded(ctx, it.Ref, it.Message)
}

// forget drops what the server remembers about a delivered item.
func (s *Server) forget(id string) {
	s.mu.Lock()
	delete(s.committed, id)
	s.mu.Unlock()
}

// notEvidence is the Ref of queue items that are not PEC messages and have
// no ledger entry: ordinary mail forwarded by a mailbox policy, notices of
// arrival. deliver sends them without looking in the ledger.
const notEvidence = "-"

// errNeverRecorded marks a queued message whose ledger entry was never
// written: the step that queued it crashed before answering, so the
// message must not be sent.
var errNeverRecorded = errors.New("queued before a crash but never recorded in the ledger: not sent")

// MaxQueueAge is how long the gestore tries to deliver a queued message:
// 24 hours, the second of the time limits of RFC 6109 §3.1.6. By then the
// mittente of a busta di trasporto not delivered has had (from the tracker)
// the avviso di mancata consegna per superamento dei tempi massimi, and the
// gestore of the recipient of a ricevuta has given up waiting for it, so a
// later delivery could only contradict what the parties were told. An item
// whose delivery still fails, temporarily, at that age is given up: the
// drop is recorded in the ledger (a refusal entry, Details "punto" being
// "coda", see recordRefusal) and the item leaves the queue.
const MaxQueueAge = Timeout24h

// errExpired is the cause of a drop at MaxQueueAge.
var errExpired = errors.New("not delivered within the maximum age of a queued message (24 hours)")

// deliver is the queue's delivery function. A message is sent only once
// the ledger holds the event that emitted it.
//
// Only a remote destination that cannot be reached (no route, no
// connection, no TLS) is reported to the queue as a failure of the
// destination (queue.DestinationError), which backs off its other items;
// any other failure is the item's alone. A message for our own domains
// (the "local" destination) is handed to the punto di ricezione in
// process: a refusal 5xx there is permanent, and so is a message of ours
// that cannot be read back. A permanent failure, or a temporary one at
// MaxQueueAge, ends the item with a recorded outcome: its drop is appended
// to the ledger first, and if that fails the item stays queued.
func (s *Server) deliver(ctx context.Context, it queue.Item) error {
	ok, err := s.isRecorded(ctx, it)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Warn("gestore: dropping unrecorded message", "item", it.ID, "identificativo", it.Ref)
		return &queue.PermanentError{Err: errNeverRecorded}
	}
	if it.Destination == localDestination {
		err = s.receiveLocal(ctx, it)
	} else {
		var refused []rcptRefusal
		refused, err = s.sendSMTP(ctx, it)
		if isPermanentReply(err) {
			s.log.Error("gestore: delivery refused", "item", it.ID, "destination", it.Destination, "err", err)
			err = &queue.PermanentError{Err: err}
		}
		if err == nil && len(refused) > 0 {
			// Delivered to the others: the refused recipients have their
			// outcome recorded, or the item is tried again (the
			// receiving gestore takes a busta in charge only once).
			if err := s.recipientsRefused(ctx, it, refused); err != nil {
				return err
			}
		}
	}
	var pe *queue.PermanentError
	if err != nil && !errors.As(err, &pe) && ctx.Err() == nil && s.now().Sub(it.Enqueued) >= MaxQueueAge {
		s.log.Warn("gestore: giving up a queued message", "item", it.ID, "destination", it.Destination, "enqueued", it.Enqueued, "err", err)
		err = &queue.PermanentError{Err: fmt.Errorf("%w: %w", errExpired, err)}
	}
	if errors.As(err, &pe) {
		if rerr := s.recordDrop(ctx, it, err); rerr != nil {
			return rerr
		}
	}
	if err == nil || errors.As(err, &pe) {
		s.forget(it.ID)
	}
	return err
}

// receiveLocal hands a message for our own domains to the punto di
// ricezione, and maps its outcome to the queue's: a permanent refusal is
// a queue.PermanentError, a temporary one an error to try again.
func (s *Server) receiveLocal(ctx context.Context, it queue.Item) error {
	o := s.receive(ctx, it.From, it.To, it.Message, it.ID)
	switch o.Kind() {
	case Success:
		return nil
	case Permanent:
		return &queue.PermanentError{Err: o}
	}
	return o
}

// route returns the SMTP servers of domain, best first.
func (s *Server) route(ctx context.Context, domain string) ([]string, error) {
	if r, ok := s.opts.Routes[domain]; ok {
		return []string{r}, nil
	}
	mxs, err := net.DefaultResolver.LookupMX(ctx, domain)
	if err != nil || len(mxs) == 0 {
		return nil, fmt.Errorf("no route and no MX for %s: %v", domain, err)
	}
	sort.Slice(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var out []string
	for _, mx := range mxs {
		out = append(out, net.JoinHostPort(strings.TrimSuffix(mx.Host, "."), "25"))
	}
	return out, nil
}

// sendSMTP delivers it to the SMTP server of its destination. Between
// gestori, STARTTLS with a verified certificate is required (RFC 6109
// §5.2); ordinary mail uses TLS when offered.
//
// Recipients that the server refuses for good at RCPT, while it takes
// others, are returned in refused: the message went to the others.
func (s *Server) sendSMTP(ctx context.Context, it queue.Item) (refused []rcptRefusal, err error) {
	addrs, err := s.route(ctx, it.Destination)
	if err != nil {
		return nil, &queue.DestinationError{Err: err}
	}
	pecDomain := s.opts.Index.IsManagedDomain(it.Destination)
	var errs []error
	unreachable := true // by every server of the destination
	for _, addr := range addrs {
		refused, err := s.sendTo(ctx, addr, pecDomain, it)
		if err == nil {
			return refused, nil
		}
		if isPermanentReply(err) {
			return nil, err
		}
		if !errors.Is(err, errUnreachable) {
			unreachable = false
		}
		errs = append(errs, err)
	}
	if unreachable {
		return nil, &queue.DestinationError{Err: errors.Join(errs...)}
	}
	return nil, errors.Join(errs...)
}

// rcptRefusal is a recipient refused for good at RCPT.
type rcptRefusal struct {
	address string
	reply   error // the server's reply (see replyText)
}

// errUnreachable is wrapped by the errors of dial: the server could not
// be reached, or refused TLS, before anything was said about a message.
var errUnreachable = errors.New("server unreachable")

// idleConn is an open SMTP session to another server, kept for reuse.
type idleConn struct {
	c    *smtp.Client
	conn net.Conn
	last time.Time
}

// maxIdle bounds the idle sessions kept per server, and idleFor how long.
const (
	maxIdle = 8
	idleFor = 30 * time.Second
)

// sendTo delivers it to the SMTP server at addr, on an idle session to it
// if there is one (with a fresh one if that fails before the server said
// anything about the message), and keeps the session for the next.
func (s *Server) sendTo(ctx context.Context, addr string, requireTLS bool, it queue.Item) ([]rcptRefusal, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for attempt := 0; ; attempt++ {
		ic, reused := s.takeIdle(addr), true
		if ic == nil {
			var err error
			if ic, err = s.dial(ctx, addr, requireTLS); err != nil {
				return nil, err
			}
			reused = false
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = ic.conn.SetDeadline(dl)
		}
		refused, err := transact(ic.c, it)
		switch {
		case err == nil:
			s.putIdle(addr, ic)
			return refused, nil
		case isReply(err):
			// The server answered: the session is sound, the message
			// refused or deferred.
			if ic.c.Reset() == nil {
				s.putIdle(addr, ic)
			} else {
				ic.c.Close()
			}
			return nil, fmt.Errorf("gestore: send to %s: %w", addr, err)
		default:
			ic.c.Close()
			if !reused || attempt > 0 {
				return nil, fmt.Errorf("gestore: send to %s: %w", addr, err)
			}
			// An idle session the server had closed: dial afresh.
		}
	}
}

// transact sends one message on an open session. A recipient refused for
// good at RCPT is left out and returned in refused, unless all are: then
// the first refusal is the error. A recipient deferred (4xx) fails the
// whole transaction, to be tried again.
func transact(c *smtp.Client, it queue.Item) (refused []rcptRefusal, err error) {
	if err := c.Mail(it.From, nil); err != nil {
		return nil, fmt.Errorf("MAIL: %w", err)
	}
	var first error
	for _, rcpt := range it.To {
		err := c.Rcpt(rcpt, nil)
		switch {
		case err == nil:
			continue
		case isPermanentReply(err):
			refused = append(refused, rcptRefusal{address: rcpt, reply: err})
			if first == nil {
				first = fmt.Errorf("RCPT %s: %w", rcpt, err)
			}
		default:
			return nil, fmt.Errorf("RCPT %s: %w", rcpt, err)
		}
	}
	if len(refused) == len(it.To) {
		return nil, first
	}
	w, err := c.Data()
	if err != nil {
		return nil, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(it.Message); err != nil {
		return nil, fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("end of DATA: %w", err)
	}
	return refused, nil
}

// dial opens an SMTP session to addr: with STARTTLS and a verified
// certificate when requireTLS (between gestori, RFC 6109 §5.2), else with
// TLS when the server offers it.
func (s *Server) dial(ctx context.Context, addr string, requireTLS bool) (*idleConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gestore: send to %s: %w: %w", addr, errUnreachable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := s.opts.ClientTLS.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if requireTLS {
		c, err := smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("gestore: send to %s: STARTTLS: %w: %w", addr, errUnreachable, err)
		}
		return &idleConn{c: c, conn: conn}, nil
	}
	// Ordinary mail: go-smtp upgrades only a fresh client, so look
	// first, then reconnect for TLS.
	c := smtp.NewClient(conn)
	if err := c.Hello(s.opts.Hostname); err != nil {
		c.Close()
		return nil, fmt.Errorf("gestore: send to %s: EHLO: %w: %w", addr, errUnreachable, err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return &idleConn{c: c, conn: conn}, nil
	}
	c.Close()
	if conn, err = d.DialContext(ctx, "tcp", addr); err != nil {
		return nil, fmt.Errorf("gestore: send to %s: %w: %w", addr, errUnreachable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if c, err = smtp.NewClientStartTLS(conn, cfg); err != nil {
		conn.Close()
		return nil, fmt.Errorf("gestore: send to %s: STARTTLS: %w: %w", addr, errUnreachable, err)
	}
	return &idleConn{c: c, conn: conn}, nil
}

// takeIdle returns an idle session to addr that has not been idle too
// long, or nil.
func (s *Server) takeIdle(addr string) *idleConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for list := s.idle[addr]; len(list) > 0; list = s.idle[addr] {
		ic := list[len(list)-1]
		s.idle[addr] = list[:len(list)-1]
		if time.Since(ic.last) < idleFor { // wall time: this is about TCP, not the gestore's clock
			return ic
		}
		go ic.c.Close()
	}
	return nil
}

// putIdle keeps a session for reuse, or closes it when enough are kept.
func (s *Server) putIdle(addr string, ic *idleConn) {
	ic.last = time.Now()
	s.mu.Lock()
	if len(s.idle[addr]) < maxIdle && !s.closed {
		s.idle[addr] = append(s.idle[addr], ic)
		ic = nil
	}
	s.mu.Unlock()
	if ic != nil {
		_ = ic.c.Quit()
		ic.c.Close()
	}
}

// archive gives a signed message to the archive hook, if there is one.
func (s *Server) archive(ctx context.Context, mailbox string, kind pec.Kind, tx *pec.Transaction, msg []byte) (string, error) {
	if s.opts.Archive == nil {
		return "", nil
	}
	key, err := s.opts.Archive.Archive(ctx, ArchivedMessage{
		Mailbox: mailbox, Kind: kind, Identificativo: tx.Identificativo, Message: msg, Time: tx.Time,
	})
	if err != nil {
		s.log.Error("gestore: archive", "identificativo", tx.Identificativo, "kind", kind, "err", err)
		return "", err
	}
	return key, nil
}

// recipientsRefused records the outcome of the recipients of it that the
// receiving server refused for good while it took the others. The
// mittente of a busta di trasporto gets, for each, an avviso di mancata
// consegna (errore no-dest for 5.1.x, altro otherwise), recorded and
// queued like any other; the refusal of any other message is recorded as
// a drop.
func (s *Server) recipientsRefused(ctx context.Context, it queue.Item, refused []rcptRefusal) error {
	var to []string
	var replies []string
	for _, r := range refused {
		to = append(to, r.address)
		replies = append(replies, r.address+": "+replyText(r.reply))
	}
	reason := errors.New("recipients refused at RCPT: " + strings.Join(replies, "; "))
	if !strings.HasPrefix(it.ID, "busta/") {
		drop := it
		drop.To = to
		return s.recordDrop(ctx, drop, reason)
	}
	m, err := pec.Parse(it.Message, pec.ParseOptions{})
	if err != nil {
		return s.recordDrop(ctx, it, fmt.Errorf("%w (the busta does not parse back: %v)", reason, err))
	}
	tx, err := pec.TransactionFromBusta(m, s.now())
	if err != nil {
		return s.recordDrop(ctx, it, fmt.Errorf("%w (%v)", reason, err))
	}
	var items []queue.Item
	var events []ledger.Event
	for _, r := range refused {
		errore, text := daticert.ErroreAltro, replyText(r.reply)
		if isNoSuchRecipient(r.reply) {
			errore = daticert.ErroreNoDest
		}
		b, err := s.g.MancataConsegna(tx, r.address, errore, truncate(oneLine(text), 300))
		if err != nil {
			return fmt.Errorf("gestore: avviso di mancata consegna for %s: %w", r.address, err)
		}
		ev := event(ledger.KindErroreConsegna, tx, s.g.Name(), b.Message, b.MessageID)
		ev.Details["destinatario"] = strings.ToLower(r.address)
		ev.Details["errore"] = string(errore)
		ev.Details["risposta"] = truncate(oneLine(text), 1024)
		if ev.ArchiveKey, err = s.archive(ctx, tx.Mittente, b.Kind, tx, b.Message); err != nil {
			return err
		}
		events = append(events, ev)
		items = append(items, queue.Item{
			ID:          itemID("mancata-consegna-rcpt", tx.Identificativo, r.address),
			Destination: s.destinationOf(tx.Mittente),
			From:        s.g.Address(),
			To:          []string{tx.Mittente},
			Message:     b.Message,
		})
	}
	if err := s.commit(ctx, items, events...); err != nil && !errors.Is(err, errBusy) {
		return fmt.Errorf("gestore: commit the avvisi di mancata consegna of %s: %w", it.ID, err)
	}
	return nil
}
