package gestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/pec/connlimit"
)

// Default limits of the SMTP sessions, so that no client, authenticated or
// not, can hold the server's connections, goroutines or memory.
const (
	// DefaultPreMailTimeout is how long a session has, from its connection
	// or from the end of its last message, to give a MAIL command
	// (authenticating first, at the punto di accesso). NOOP, RSET and the
	// like do not extend it.
	DefaultPreMailTimeout = time.Minute
	// DefaultMaxSessionTime bounds a whole session: 30 MB at 20 kB/s with
	// room to spare.
	DefaultMaxSessionTime = 30 * time.Minute
	// DefaultMaxTransactions bounds the resets (RSET, or the end of a
	// message) of one session; the next command gets 421. A delivery
	// agent that sends more reconnects.
	DefaultMaxTransactions = 1000
	// DefaultMaxData bounds the messages being received or processed at
	// once, over all the server's listeners.
	DefaultMaxData = 100
	// DefaultMaxDataPerAddress bounds the messages being received or
	// processed at once from one client address (see
	// connlimit.AddressKey), over all the server's listeners: as many as the
	// connections an address may hold by default, since another gestore
	// sends from few addresses over many connections. Memory is bounded by
	// MaxDataMemory whatever these caps are; lower this one where clients
	// are many and small.
	DefaultMaxDataPerAddress = connlimit.DefaultMaxPerAddress
	// DefaultSpoolThreshold is the size above which a message being
	// received goes to a file in Options.SpoolDir rather than memory.
	DefaultSpoolThreshold = 1 << 20
	// DefaultMaxDataMemory bounds the bytes of the spooled messages being
	// processed (parsed, signed, wrapped) at once: one message of the
	// legal 30 MB, or several smaller ones. Processing a message takes
	// several times its size in memory: with 16 concurrent 29 MB messages
	// BenchmarkConcurrentLargeData measured the live heap's growth at
	// 2829 MiB unbounded, 553 MiB with a budget of 64 MiB and 322 MiB with
	// this one. A larger message is processed alone.
	DefaultMaxDataMemory = 32 << 20
	// DefaultMaxStrangerSpool bounds the strangers' messages (at the punto
	// di ricezione, from an address no gestore has delivered from) read
	// past the spool threshold, or processed, at once. Another's large
	// message waits, unread, for its turn (the sender's TCP window stops
	// it), for up to the session's Timeout. Reading, spooling and
	// wrapping 16 concurrent 29 MB messages took most of the server's CPU
	// from the PEC traffic (the hostile bench's p99 went from 1.1× to
	// 1.9× the load phase's with them).
	DefaultMaxStrangerSpool = 2
)

// smtpRefusal is what a connection over connlimit's caps reads.
const smtpRefusal = "421 4.7.0 Too many connections, try again later\r\n"

// The outcomes of the limits have fixed replies (see replies): no reply
// carries an error's text, which could name internal addresses ("read tcp
// 10.0.0.5:25->...: i/o timeout").

// limits are the shared state of the limits of one Server: its DATA slots,
// its memory budget and the peers its punto di ricezione prefers. The
// known peers' messages at the punto di ricezione have DATA slots and a
// memory budget of their own (peerData, peerMemory), as large as
// everyone else's: no crowd of strangers' messages in transfer makes
// another gestore's busta wait or answers it 451.
type limits struct {
	data       *slots
	memory     *budget
	peerData   *slots
	peerMemory *budget
	peers      *peers
	// strangerSpool counts the strangers' messages past the spool
	// threshold (see DefaultMaxStrangerSpool).
	strangerSpool *budget
}

// newLimits fills in the defaults of o's limits and returns their state.
func newLimits(o *Options) *limits {
	if o.PreMailTimeout <= 0 {
		o.PreMailTimeout = DefaultPreMailTimeout
	}
	if o.MaxSessionTime <= 0 {
		o.MaxSessionTime = DefaultMaxSessionTime
	}
	if o.MaxTransactions <= 0 {
		o.MaxTransactions = DefaultMaxTransactions
	}
	if o.MaxData <= 0 {
		o.MaxData = DefaultMaxData
	}
	if o.MaxDataPerAddress <= 0 {
		o.MaxDataPerAddress = DefaultMaxDataPerAddress
	}
	if o.SpoolThreshold <= 0 {
		o.SpoolThreshold = DefaultSpoolThreshold
	}
	if o.MaxDataMemory <= 0 {
		o.MaxDataMemory = DefaultMaxDataMemory
	}
	if o.MaxStrangerSpool <= 0 {
		o.MaxStrangerSpool = DefaultMaxStrangerSpool
	}
	if o.PeersFile == "" && o.SpoolDir != "" {
		o.PeersFile = filepath.Join(o.SpoolDir, DefaultPeersFile)
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	return &limits{
		data:   &slots{max: o.MaxData, perKey: o.MaxDataPerAddress, byKey: make(map[string]int)},
		memory: &budget{max: o.MaxDataMemory},
		// The peers' lane: its per-address cap is the overall one, since
		// a gestore sends from few addresses.
		peerData:   &slots{max: o.MaxData, perKey: o.MaxData, byKey: make(map[string]int)},
		peerMemory: &budget{max: o.MaxDataMemory},
		peers:      loadPeers(o.PeersFile, o.Now, o.Logger),

		strangerSpool: &budget{max: int64(o.MaxStrangerSpool)},
	}
}

// listen wraps ln with the connection caps; with refusal set, refused
// connections read the SMTP refusal first. With peers set (the punto di
// ricezione), the addresses from which other gestori have delivered have
// a lane of their own (see peers).
func (s *Server) listen(ln net.Listener, refusal, peers bool) net.Listener {
	lo := s.opts.Limits
	lo.Ceiling = s.opts.PreMailTimeout
	if refusal {
		lo.Refusal = []byte(smtpRefusal)
	}
	if peers && lo.Preferred == nil {
		lo.Preferred = s.lim.peers.known
	}
	if lo.Logger == nil {
		lo.Logger = s.log
	}
	return connlimit.NewListener(ln, lo)
}

// limitedBackend puts every session of be under the server's limits.
type limitedBackend struct {
	s  *Server
	be smtp.Backend
}

func (b limitedBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	inner, err := b.be.NewSession(c)
	if err != nil {
		return nil, err
	}
	ls := &limitedSession{s: b.s, inner: inner, c: c, start: time.Now()}
	if nc := c.Conn(); nc != nil {
		if ls.conn, _ = connlimit.FromConn(nc); ls.conn != nil {
			ls.key, ls.start = ls.conn.Key(), ls.conn.Accepted()
		} else {
			ls.key = connlimit.AddressKey(nc.RemoteAddr())
		}
	}
	_, ls.ricezione = b.be.(*ricezioneBackend)
	if as, ok := inner.(smtp.AuthSession); ok {
		return &limitedAuthSession{limitedSession: ls, auth: as}, nil
	}
	return ls, nil
}

// limitedSession applies the limits around a session: the ceilings of its
// connection, the DATA slots, the spooling of large messages and replies
// that carry no internal detail.
type limitedSession struct {
	s      *Server
	inner  smtp.Session
	c      *smtp.Conn
	conn   *connlimit.Conn // nil when the listener is not a connlimit one
	key    string
	start  time.Time
	ends   int  // resets so far
	mailed bool // a MAIL was accepted since the last reset
	// ricezione: the session is the punto di ricezione's, where the
	// known peers' messages have a lane of their own (see lane).
	ricezione bool
}

// setCeiling bounds the connection at t, never past the session's maximum
// length.
func (l *limitedSession) setCeiling(t time.Time) {
	if l.conn == nil {
		return
	}
	l.conn.SetCeiling(earliest(t, l.start.Add(l.s.opts.MaxSessionTime)))
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (l *limitedSession) Mail(from string, opts *smtp.MailOptions) error {
	if err := l.inner.Mail(from, opts); err != nil {
		return l.scrub("MAIL", err)
	}
	l.mailed = true
	l.setCeiling(l.start.Add(l.s.opts.MaxSessionTime))
	return nil
}

func (l *limitedSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	return l.scrub("RCPT", l.inner.Rcpt(to, opts))
}

// Reset is called on RSET, HELO, EHLO and at the end of every message. The
// end of a transaction (a MAIL was accepted) opens a new pre-MAIL window:
// the next MAIL must come within the pre-MAIL timeout; a reset without one
// extends nothing. A session gets MaxTransactions resets.
func (l *limitedSession) Reset() {
	l.inner.Reset()
	l.ends++
	if l.ends > l.s.opts.MaxTransactions {
		l.s.log.Info("smtp: session ended after too many transactions", "remote", l.key, "transactions", l.ends)
		l.setCeiling(time.Now())
		return
	}
	if l.mailed {
		l.mailed = false
		l.setCeiling(time.Now().Add(l.s.opts.PreMailTimeout))
	}
}

func (l *limitedSession) Logout() error { return l.inner.Logout() }

// Data takes a DATA slot (refusing with 451 4.3.2 when the client's
// address or the server has too many messages in transfer), reads the
// message into memory or, above the spool threshold, into a file, then
// waits for memory to process it in and hands it to the session.
func (l *limitedSession) Data(r io.Reader) error {
	inner, err := l.data(r)
	if err != nil && !inner {
		// A refusal made here, before the session saw the message (the
		// size limit's 552, a timeout, the caps), is recorded as the
		// session's own are.
		if n, ok := l.inner.(dataRefusalNoter); ok {
			return n.noteDataRefusal(err)
		}
		return publicError(err)
	}
	return err
}

// dataRefusalNoter is a session that records the refusals of DATA made
// by the layers around it.
type dataRefusalNoter interface {
	noteDataRefusal(err error) error
}

// data is Data's work; inner reports whether err is the inner session's.
func (l *limitedSession) data(r io.Reader) (inner bool, err error) {
	slots, memory := l.lane()
	if !slots.take(l.key) {
		l.s.log.Info("smtp: DATA refused, too many messages in transfer", "remote", l.key)
		return false, outcome(ReasonBusy, "", nil)
	}
	defer slots.release(l.key)
	var turn func() error
	if l.stranger() {
		// A stranger's large message waits for its turn before it is
		// read further, and keeps it until it is processed.
		held := false
		defer func() {
			if held {
				l.s.lim.strangerSpool.release(1)
			}
		}()
		turn = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), l.s.opts.Timeout)
			defer cancel()
			if err := l.s.lim.strangerSpool.acquire(ctx, 1); err != nil {
				l.s.log.Warn("smtp: no turn in time for a stranger's large message", "remote", l.key)
				return fmt.Errorf("%w: %w", errNoTurn, err)
			}
			held = true
			return nil
		}
	}
	sp, err := l.s.spoolTurn(&deadlineReader{r: r, c: l.c, d: l.s.opts.Timeout}, turn)
	if err != nil {
		return false, l.readError(err)
	}
	defer sp.close()
	if sp.f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.s.opts.Timeout)
		err := memory.acquire(ctx, sp.size)
		cancel()
		if err != nil {
			l.s.log.Warn("smtp: no memory to process a message in time", "remote", l.key, "size", sp.size)
			return false, outcome(ReasonBusy, "", err)
		}
		defer memory.release(sp.size)
	}
	msg, err := sp.bytes()
	if err != nil {
		l.s.log.Error("smtp: read the spooled message", "err", err)
		return false, outcome(ReasonLocal, "", err)
	}
	return true, l.scrub("DATA", l.inner.Data(&body{msg: msg}))
}

// stranger reports whether the session's messages are a stranger's: at
// the punto di ricezione, from an address no gestore has delivered from.
func (l *limitedSession) stranger() bool {
	return l.ricezione && !l.s.lim.peers.known(l.key)
}

// lane returns the DATA slots and the memory budget a message of the
// session takes: at the punto di ricezione, from a known peer's address
// (as of this message: a session opened before its address became known
// is one another gestore keeps for its next buste), the peers' own;
// everyone else's otherwise.
func (l *limitedSession) lane() (*slots, *budget) {
	if l.ricezione && l.s.lim.peers.known(l.key) {
		return l.s.lim.peerData, l.s.lim.peerMemory
	}
	return l.s.lim.data, l.s.lim.memory
}

// readError maps a failure to read the message to an outcome: go-smtp's
// size limit is the size rule's (see Server.tooLarge).
func (l *limitedSession) readError(err error) error {
	if o := fromSessionError(err); o.Reason == ReasonTooLarge {
		l.s.log.Info("smtp: message too large", "remote", l.key, "max", l.s.opts.MaxSize)
		return l.s.tooLarge(err)
	}
	if errors.Is(err, errNoTurn) {
		return outcome(ReasonBusy, "", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		l.s.log.Info("smtp: timeout reading a message", "remote", l.key)
		return outcome(ReasonDataTimeout, "", err)
	}
	if errors.Is(err, errSpool) {
		l.s.log.Error("smtp: spool a message", "err", err)
		return deferred("spool", err)
	}
	l.s.log.Info("smtp: error reading a message", "remote", l.key, "err", err)
	return outcome(ReasonDataRead, "", err)
}

// scrub passes replies through and makes any other error a reply (see
// publicError), logging the errors that are not the engine's outcomes.
func (l *limitedSession) scrub(cmd string, err error) error {
	if err == nil {
		return nil
	}
	if o := (*Outcome)(nil); !errors.As(err, &o) && !isReply(err) {
		l.s.log.Error("smtp: "+cmd, "remote", l.key, "err", err)
	}
	return publicError(err)
}

// limitedAuthSession is a limitedSession whose session authenticates.
type limitedAuthSession struct {
	*limitedSession
	auth smtp.AuthSession
}

func (l *limitedAuthSession) AuthMechanisms() []string { return l.auth.AuthMechanisms() }

func (l *limitedAuthSession) Auth(mech string) (sasl.Server, error) { return l.auth.Auth(mech) }

// deadlineReader moves the connection's read deadline d ahead before each
// read of the message: d bounds the client's silences, not the whole
// transfer, which the session's ceiling bounds.
type deadlineReader struct {
	r io.Reader
	c *smtp.Conn
	d time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.c != nil && d.c.Conn() != nil {
		_ = d.c.Conn().SetReadDeadline(time.Now().Add(d.d))
	}
	return d.r.Read(p)
}

// body is the message handed to a session's Data: readBody takes its
// bytes without a copy.
type body struct {
	msg []byte
	off int
}

func (b *body) Read(p []byte) (int, error) {
	if b.off >= len(b.msg) {
		return 0, io.EOF
	}
	n := copy(p, b.msg[b.off:])
	b.off += n
	return n, nil
}

// readBody returns the whole message r holds: the bytes of a *body as
// they are, any other reader read to its end.
func readBody(r io.Reader) ([]byte, error) {
	if b, ok := r.(*body); ok && b.off == 0 {
		b.off = len(b.msg)
		return b.msg, nil
	}
	return io.ReadAll(r)
}

var errSpool = errors.New("spool")

// errNoTurn is the error of a stranger's large message that did not get
// its turn in time (see DefaultMaxStrangerSpool).
var errNoTurn = errors.New("no turn for a stranger's large message")

// spooled is a message read to its end: in memory (head) or, when larger
// than the spool threshold, in an unlinked temporary file.
type spooled struct {
	head []byte
	f    *os.File
	size int64
}

// spool reads r to its end, in memory up to the spool threshold and in a
// file of the spool directory above it. What it allocates is bounded by
// twice the threshold, whatever the message's size.
func (s *Server) spool(r io.Reader) (*spooled, error) {
	return s.spoolTurn(r, nil)
}

// spoolTurn is spool that, if turn is not nil, calls it once the message
// proves larger than the threshold, before reading further, and gives up
// with its error.
func (s *Server) spoolTurn(r io.Reader, turn func() error) (*spooled, error) {
	limit := int(s.opts.SpoolThreshold) + 1
	head := make([]byte, 0, min(32<<10, limit))
	for len(head) < limit {
		if len(head) == cap(head) {
			head = slices.Grow(head, min(cap(head), limit-len(head)))
		}
		n, err := r.Read(head[len(head):min(cap(head), limit)])
		head = head[:len(head)+n]
		if err == io.EOF {
			return &spooled{head: head, size: int64(len(head))}, nil
		}
		if err != nil {
			return nil, &unreadMessage{err: err, head: bytes.Clone(head[:min(len(head), maxHeadKept)])}
		}
	}
	if turn != nil {
		if err := turn(); err != nil {
			return nil, err
		}
	}
	f, err := os.CreateTemp(s.opts.SpoolDir, "data-*")
	if err != nil {
		return nil, fmt.Errorf("%w: create: %w", errSpool, err)
	}
	// Unlinked at once: a crash leaves nothing behind.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: unlink: %w", errSpool, err)
	}
	sp := &spooled{f: f}
	if _, err := f.Write(head); err != nil {
		sp.close()
		return nil, fmt.Errorf("%w: write: %w", errSpool, err)
	}
	var werr error
	rest, err := io.CopyBuffer(writerFunc(func(p []byte) (int, error) {
		n, err := f.Write(p)
		if err != nil {
			werr = err
		}
		return n, err
	}), onlyReader{r}, head[:cap(head)])
	if err != nil {
		if werr != nil {
			sp.close()
			return nil, fmt.Errorf("%w: write: %w", errSpool, werr)
		}
		kept := make([]byte, maxHeadKept)
		n, _ := f.ReadAt(kept, 0) // what was written, up to maxHeadKept
		sp.close()
		return nil, &unreadMessage{err: err, head: kept[:n]}
	}
	sp.size = int64(len(head)) + rest
	return sp, nil
}

// maxHeadKept is how much of a message that could not be read to its end
// spool keeps: enough for its header, which the avviso di non
// accettazione of a message too large quotes (its Subject).
const maxHeadKept = 64 << 10

// unreadMessage is the error of a message that could not be read to its
// end (too large, a timeout, a lost connection), with its first bytes.
type unreadMessage struct {
	err  error
	head []byte
}

func (u *unreadMessage) Error() string { return u.err.Error() }
func (u *unreadMessage) Unwrap() error { return u.err }

// onlyReader hides any WriterTo of the reader, so that io.CopyBuffer uses
// the buffer given.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// bytes returns the message, read from the file if it was spooled.
func (sp *spooled) bytes() ([]byte, error) {
	if sp.f == nil {
		return sp.head, nil
	}
	msg := make([]byte, sp.size)
	if _, err := sp.f.ReadAt(msg, 0); err != nil && !(errors.Is(err, io.EOF) && len(msg) == 0) {
		return nil, err
	}
	return msg, nil
}

func (sp *spooled) close() {
	if sp.f != nil {
		sp.f.Close()
		sp.f = nil
	}
}

// slots counts the messages in transfer, overall and by client address.
type slots struct {
	mu          sync.Mutex
	max, perKey int
	active      int
	byKey       map[string]int
}

func (s *slots) take(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active >= s.max || s.byKey[key] >= s.perKey {
		return false
	}
	s.active++
	s.byKey[key]++
	return true
}

func (s *slots) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if n := s.byKey[key] - 1; n > 0 {
		s.byKey[key] = n
	} else {
		delete(s.byKey, key)
	}
}

func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// budget is a weighted semaphore on bytes of memory. A request larger than
// the whole budget is granted when nothing else holds any.
type budget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	waiting int           // acquires blocked
	wake    chan struct{} // closed when memory is released
}

func (b *budget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.waiting++
		b.mu.Unlock()
		var err error
		select {
		case <-wake:
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// state returns what is held and how many acquires are blocked.
func (b *budget) state() (used int64, waiting int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.waiting
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// Known peers. Another gestore delivers from a few addresses, again and
// again; a crowd of strangers (thousands of idle connections, sessions
// that hold a MAIL and stay silent) can fill the punto di ricezione's
// connection cap for as long as it likes, and a gestore refused at
// connect defers the busta for minutes. So the punto di ricezione
// remembers the addresses from which a busta di trasporto was taken in
// charge or a ricevuta recorded (both signed by a gestore of the indice,
// and new: a replay records nothing) and gives them a lane of their own
// beside the strangers' (connlimit.Options.Preferred), as Postfix's
// postscreen remembers the clients that passed its tests. The addresses
// are kept across restarts: an attack under way when the gestore
// restarts must not keep the other gestori out.
const (
	// DefaultPeersFile is the name of the file, in Options.SpoolDir, that
	// keeps the known peers when Options.PeersFile is empty.
	DefaultPeersFile = "known-peers.json"
	// PeerTTL is how long an address stays known after its last
	// delivery.
	PeerTTL = 30 * 24 * time.Hour
	// MaxPeers bounds the addresses known; past it, the one that
	// delivered least recently is forgotten.
	MaxPeers = 1024
	// peerSaveEvery is how stale the saved time of a known address may
	// get before a delivery from it saves the file again: a busy peer
	// costs no write per message.
	peerSaveEvery = time.Hour
	// maxPeersFile bounds what is read of the file.
	maxPeersFile = 1 << 20
)

// peers are the addresses (connlimit keys) from which other gestori have
// delivered, with when they last did.
type peers struct {
	path string // empty: in memory only
	now  func() time.Time
	log  *slog.Logger

	mu    sync.Mutex
	seen  map[string]time.Time // when each delivered last
	saved map[string]time.Time // what the file says

	saveMu sync.Mutex // one write of the file at a time
}

// loadPeers reads the known peers from path, if not empty. A file missing,
// unreadable or malformed gives no known peer (and a warning): the set is
// a preference, never a reason not to start.
func loadPeers(path string, now func() time.Time, log *slog.Logger) *peers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &peers{path: path, now: now, log: log, seen: map[string]time.Time{}, saved: map[string]time.Time{}}
	if path == "" {
		return p
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return p
	}
	if err != nil {
		log.Warn("gestore: known peers not read", "file", path, "err", err)
		return p
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPeersFile+1))
	if err == nil && len(data) > maxPeersFile {
		err = fmt.Errorf("larger than %d bytes", maxPeersFile)
	}
	var stored map[string]time.Time
	if err == nil {
		err = json.Unmarshal(data, &stored)
	}
	if err != nil {
		log.Warn("gestore: known peers not read", "file", path, "err", err)
		return p
	}
	t := now()
	for k, at := range stored {
		if k != "" && t.Sub(at) < PeerTTL {
			p.seen[k], p.saved[k] = at, at
		}
	}
	p.trim()
	return p
}

// known reports whether key delivered within PeerTTL.
func (p *peers) known(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.seen[key]
	return ok && p.now().Sub(at) < PeerTTL
}

// learn records a delivery from key now, and saves the set when key is
// new or its saved time is stale. A failed save is logged: the set still
// holds key until the gestore stops.
func (p *peers) learn(key string) {
	if key == "" {
		return
	}
	t := p.now()
	p.mu.Lock()
	p.seen[key] = t
	saved, ok := p.saved[key]
	if ok && t.Sub(saved) < peerSaveEvery && !t.Before(saved) {
		p.mu.Unlock()
		return
	}
	p.trim()
	p.mu.Unlock()
	p.save()
}

// trim forgets the addresses that have expired and, past MaxPeers, those
// that delivered least recently; p.mu is held.
func (p *peers) trim() {
	t := p.now()
	for k, at := range p.seen {
		if t.Sub(at) >= PeerTTL {
			delete(p.seen, k)
		}
	}
	if len(p.seen) <= MaxPeers {
		return
	}
	keys := make([]string, 0, len(p.seen))
	for k := range p.seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return p.seen[b].Compare(p.seen[a]) })
	for _, k := range keys[MaxPeers:] {
		delete(p.seen, k)
	}
}

// save writes the set to its file, durably.
func (p *peers) save() {
	if p.path == "" {
		return
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	p.mu.Lock()
	snapshot := maps.Clone(p.seen)
	p.mu.Unlock()
	data, err := json.Marshal(snapshot)
	if err == nil {
		err = durable.WriteFile(p.path, data, 0o600)
	}
	if err != nil {
		p.log.Warn("gestore: known peers not saved", "file", p.path, "err", err)
		return
	}
	p.mu.Lock()
	p.saved = snapshot
	p.mu.Unlock()
}
