// Package connlimit bounds the connections a server holds: a net.Listener
// wrapper with a cap on concurrent connections overall and per client
// address, and connections whose deadlines a session can cap with an
// absolute ceiling (a pre-authentication timeout, a maximum session
// length) that the protocol engine's own per-read deadlines cannot
// extend.
//
// A server may prefer some clients (Options.Preferred): another mail
// server that has delivered to it before, say. Their connections have a
// lane of their own (Options.MaxPreferred) beside the MaxConns of
// everyone else, so that no crowd of strangers, however new or busy its
// connections, keeps them out.
//
// Excess connections are accepted from the kernel and closed at once,
// after an optional one-line refusal (for SMTP, "421 4.7.0 ..."), so that
// no attacker can fill the process's file descriptors or the listen
// backlog and starve legitimate clients. An accept that fails because the
// process is out of descriptors (EMFILE, ENFILE) is retried after a
// growing pause rather than in a tight loop.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Defaults, sized for a PEC gestore: a few hundred titolari's clients and
// other gestori's delivery agents, which open a handful of connections
// each.
const (
	// DefaultMaxConns is the cap on one listener's concurrent
	// connections. With the six listeners of a gestore this stays well
	// below the descriptor limit Go raises a process to on Linux.
	DefaultMaxConns = 2000
	// DefaultMaxPerAddress is the cap on one client address's concurrent
	// connections to one listener (an IPv4 address, or an IPv6 /64).
	// Large enough for a NAT in front of an office, a mail client's
	// parallel IMAP connections or a delivery agent's parallel sessions.
	DefaultMaxPerAddress = 20
	// refusalTimeout bounds writing the refusal line to an excess
	// connection; a fresh socket's send buffer takes it at once.
	refusalTimeout = 100 * time.Millisecond
	// writeGrace is how long after its ceiling a connection may still be
	// written to: the server can say why it closes (SMTP's 421).
	writeGrace = 5 * time.Second
	// evictAfter is how long a connection keeps its place, once accepted,
	// before a newcomer may take it (see Options.Ceiling).
	evictAfter = 2 * time.Second
	// maxAcceptBackoff bounds the pause after a failed accept.
	maxAcceptBackoff = time.Second
	// DefaultMaxPreferred is the cap on the concurrent connections of
	// preferred clients (see Options.Preferred), beside MaxConns: a few
	// dozen other mail servers with a handful of connections each.
	DefaultMaxPreferred = 256
)

// Options configures a Listener. The zero value gives the defaults.
type Options struct {
	// MaxConns caps the concurrent connections; 0 means DefaultMaxConns,
	// a negative value means no cap.
	MaxConns int
	// MaxPerAddress caps the concurrent connections with the same Key; 0
	// means DefaultMaxPerAddress, a negative value means no cap.
	MaxPerAddress int
	// Key returns the key under which a remote address counts against
	// MaxPerAddress; nil means AddressKey.
	Key func(net.Addr) string
	// Refusal, if not empty, is written to a refused connection before it
	// is closed, e.g. "421 4.7.0 Too many connections\r\n" for SMTP. Empty
	// means the connection is just closed (TLS listeners, HTTP, IMAP).
	Refusal []byte
	// Ceiling, if not zero, bounds every accepted connection's life until
	// the session moves the ceiling with Conn.SetCeiling: no read succeeds
	// past accept time plus Ceiling (see SetCeiling). It is how long a client may
	// take before the protocol knows who it is (TLS handshake, greeting).
	//
	// With a Ceiling, a connection over MaxConns does not wait for idle
	// ones to time out: it takes the place of the oldest connection still
	// under its accept-time ceiling (one whose session never called
	// SetCeiling: a client that has not logged in or started a
	// transaction), if that one is at least two seconds old, and that one
	// is closed. A crowd of idle connections thus cannot keep a client
	// that gets on with its session out. A connection of the preferred
	// lane (see Preferred) is never taken over.
	Ceiling time.Duration
	// Preferred, if not nil, reports whether the client with the given
	// key (see Key) is one the server knows and prefers, such as another
	// mail server that has delivered to it before. A preferred client's
	// connection takes a place of the preferred lane, which MaxPreferred
	// caps apart from MaxConns, and no newcomer takes it over (see
	// Ceiling); when that lane is full it is counted, and may be refused,
	// as anyone else's. MaxPerAddress applies to it as to any. Preferred
	// is called once per connection, outside the listener's lock.
	Preferred func(key string) bool
	// MaxPreferred caps the concurrent connections of the preferred lane;
	// 0 means DefaultMaxPreferred, a negative value means no lane (the
	// preferred are counted as anyone else).
	MaxPreferred int
	// Logger receives a warning when connections are refused or an accept
	// fails; nil discards them.
	Logger *slog.Logger
}

// Listener is a net.Listener that enforces Options. Its Accept returns
// *Conn values; closing one releases its place.
type Listener struct {
	net.Listener
	opts  Options
	sleep func(time.Duration)
	now   func() time.Time

	mu        sync.Mutex
	active    int // in the general lane, capped by MaxConns
	preferred int // in the preferred lane, capped by MaxPreferred
	byKey     map[string]int
	fresh     []*Conn   // accepted under Options.Ceiling, oldest first; some no longer fresh
	evicted   int       // since the last warning
	refused   int       // since the last warning
	warned    time.Time // when the last warning about refusals was logged
}

// NewListener returns ln with the caps of opts. Closing the Listener closes
// ln; connections already accepted stay open.
func NewListener(ln net.Listener, opts Options) *Listener {
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxPerAddress == 0 {
		opts.MaxPerAddress = DefaultMaxPerAddress
	}
	if opts.MaxPreferred == 0 {
		opts.MaxPreferred = DefaultMaxPreferred
	}
	if opts.Key == nil {
		opts.Key = AddressKey
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, opts: opts, sleep: time.Sleep, now: time.Now, byKey: make(map[string]int)}
}

// Accept waits for a connection within the caps and returns it as a
// *Conn. Connections beyond a cap are refused and closed without being
// returned. An accept that fails for want of descriptors or buffers
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) is retried after a pause that doubles
// up to one second; other errors, such as the listener's closing, are
// returned.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if outOfResources(err) {
				delay = min(max(2*delay, 5*time.Millisecond), maxAcceptBackoff)
				l.opts.Logger.Warn("connlimit: accept failed, retrying", "addr", l.Addr().String(), "err", err, "retry_in", delay)
				l.sleep(delay)
				continue
			}
			return nil, err
		}
		delay = 0
		key := l.opts.Key(c.RemoteAddr())
		preferred := l.opts.Preferred != nil && l.opts.MaxPreferred >= 0 && l.opts.Preferred(key)
		lane, ok := l.take(key, preferred)
		if !ok {
			l.refuse(c)
			continue
		}
		now := l.now()
		lc := &Conn{Conn: c, l: l, key: key, accepted: now, lane: lane}
		if l.opts.Ceiling > 0 {
			lc.setCeiling(now.Add(l.opts.Ceiling))
			if lane == generalLane {
				l.addFresh(lc)
			}
		}
		return lc, nil
	}
}

// outOfResources reports whether err is an accept failure that passes
// once connections close or memory frees: out of descriptors or buffers.
func outOfResources(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lane is where a connection is counted: against MaxConns, or against
// MaxPreferred.
type lane int

const (
	generalLane lane = iota
	preferredLane
)

// take counts a new connection for key, if the caps allow it, in the
// preferred lane if the client is preferred and the lane has room, else
// in the general lane, evicting the oldest fresh connection there if that
// is what it takes (see Options.Ceiling).
func (l *Listener) take(key string, preferred bool) (lane, bool) {
	for {
		l.mu.Lock()
		if l.opts.MaxPerAddress > 0 && l.byKey[key] >= l.opts.MaxPerAddress {
			l.mu.Unlock()
			return 0, false
		}
		if preferred && (l.opts.MaxPreferred < 0 || l.preferred < l.opts.MaxPreferred) {
			l.preferred++
			l.byKey[key]++
			l.mu.Unlock()
			return preferredLane, true
		}
		if l.opts.MaxConns <= 0 || l.active < l.opts.MaxConns {
			l.active++
			l.byKey[key]++
			l.mu.Unlock()
			return generalLane, true
		}
		victim := l.oldestFresh()
		if victim == nil {
			l.mu.Unlock()
			return 0, false
		}
		victim.fresh = false
		l.evicted++
		l.mu.Unlock()
		victim.Close() // releases its place
	}
}

// oldestFresh returns the oldest connection still fresh and old enough to
// be evicted, or nil; l.mu is held.
func (l *Listener) oldestFresh() *Conn {
	for len(l.fresh) > 0 && !l.fresh[0].fresh {
		l.fresh[0] = nil
		l.fresh = l.fresh[1:]
	}
	if len(l.fresh) == 0 || l.now().Sub(l.fresh[0].accepted) < evictAfter {
		return nil
	}
	return l.fresh[0]
}

// addFresh records c as fresh, and drops from the record the connections
// that no longer are when they outnumber the live ones.
func (l *Listener) addFresh(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.fresh = true
	l.fresh = append(l.fresh, c)
	if len(l.fresh) > 2*l.active+64 {
		kept := make([]*Conn, 0, l.active+64)
		for _, f := range l.fresh {
			if f.fresh {
				kept = append(kept, f)
			}
		}
		l.fresh = kept
	}
}

func (l *Listener) release(key string, ln lane) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ln == preferredLane {
		l.preferred--
	} else {
		l.active--
	}
	if n := l.byKey[key] - 1; n > 0 {
		l.byKey[key] = n
	} else {
		delete(l.byKey, key)
	}
}

// refuse writes the refusal, if any, and closes c. It never blocks for
// longer than refusalTimeout.
func (l *Listener) refuse(c net.Conn) {
	if len(l.opts.Refusal) > 0 {
		_ = c.SetWriteDeadline(l.now().Add(refusalTimeout))
		_, _ = c.Write(l.opts.Refusal)
	}
	_ = c.Close()
	l.mu.Lock()
	l.refused++
	now := l.now()
	var n, e int
	if now.Sub(l.warned) >= time.Minute {
		n, e, l.refused, l.evicted, l.warned = l.refused, l.evicted, 0, 0, now
	}
	l.mu.Unlock()
	if n > 0 {
		l.opts.Logger.Warn("connlimit: connections refused over the caps", "addr", l.Addr().String(),
			"refused", n, "evicted", e, "max_conns", l.opts.MaxConns, "max_per_address", l.opts.MaxPerAddress)
	}
}

// Active returns the number of connections accepted and not yet closed,
// in both lanes.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active + l.preferred
}

// AddressKey is the default Options.Key: an IPv4 address (or IPv4-mapped
// IPv6 address) as itself, an IPv6 address by its /64 prefix, since one
// host commonly holds a whole /64; other addresses by their string.
func AddressKey(a net.Addr) string {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	if ip == nil {
		if a == nil {
			return ""
		}
		s := a.String()
		if host, _, err := net.SplitHostPort(s); err == nil {
			return host
		}
		return s
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Conn is a connection accepted by a Listener. Its deadlines never pass its
// ceiling, whatever the protocol engine asks for; closing it releases its
// place under the caps.
type Conn struct {
	net.Conn
	l        *Listener
	key      string
	accepted time.Time
	lane     lane
	once     sync.Once

	fresh bool // under its accept-time ceiling; guarded by l.mu

	mu       sync.Mutex
	ceiling  time.Time // zero: none
	rd, wd   time.Time // the deadlines asked for
	closeErr error
}

// Key returns the key the connection counts under (see Options.Key).
func (c *Conn) Key() string { return c.key }

// Detach releases the connection's place under the caps without closing
// it, and returns the connection under it, which the caps no longer count
// and whose deadlines no ceiling bounds. It is for a server that must hand
// its protocol engine the connection's own type (a *tls.Conn a caller's
// TLS listener made). After Detach, close the connection returned, not c.
func (c *Conn) Detach() net.Conn {
	c.notFresh()
	c.once.Do(func() { c.l.release(c.key, c.lane) })
	c.mu.Lock()
	c.ceiling, c.rd, c.wd = time.Time{}, time.Time{}, time.Time{}
	_ = c.Conn.SetDeadline(time.Time{})
	c.mu.Unlock()
	return c.Conn
}

// Accepted returns when the connection was accepted.
func (c *Conn) Accepted() time.Time { return c.accepted }

// Close closes the connection and releases its place. Calling it again
// returns the first call's result.
func (c *Conn) Close() error {
	c.notFresh()
	c.once.Do(func() {
		c.closeErr = c.Conn.Close()
		c.l.release(c.key, c.lane)
	})
	return c.closeErr
}

// SetCeiling makes t the latest instant at which a read on the connection
// may still succeed, and t plus five seconds the latest for a write (for
// a last reply), replacing any earlier ceiling; the zero time removes it.
// It applies at once, to reads and writes in progress too.
func (c *Conn) SetCeiling(t time.Time) {
	c.notFresh()
	c.setCeiling(t)
}

func (c *Conn) notFresh() {
	c.l.mu.Lock()
	c.fresh = false
	c.l.mu.Unlock()
}

func (c *Conn) setCeiling(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ceiling = t
	_ = c.Conn.SetReadDeadline(clamp(c.rd, t))
	_ = c.Conn.SetWriteDeadline(clamp(c.wd, c.writeCeiling()))
}

func (c *Conn) writeCeiling() time.Time {
	if c.ceiling.IsZero() {
		return c.ceiling
	}
	return c.ceiling.Add(writeGrace)
}

// Ceiling returns the connection's ceiling; zero means none.
func (c *Conn) Ceiling() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ceiling
}

// SetDeadline sets both deadlines, as SetReadDeadline and
// SetWriteDeadline do.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rd, c.wd = t, t
	if err := c.Conn.SetReadDeadline(clamp(t, c.ceiling)); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(clamp(t, c.writeCeiling()))
}

// SetReadDeadline sets the read deadline, no later than the ceiling.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rd = t
	return c.Conn.SetReadDeadline(clamp(t, c.ceiling))
}

// SetWriteDeadline sets the write deadline, no later than five seconds
// past the ceiling.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wd = t
	return c.Conn.SetWriteDeadline(clamp(t, c.writeCeiling()))
}

// clamp returns the earlier of t and ceiling, the zero time meaning none.
func clamp(t, ceiling time.Time) time.Time {
	switch {
	case ceiling.IsZero():
		return t
	case t.IsZero() || ceiling.Before(t):
		return ceiling
	}
	return t
}

// FromConn returns the *Conn under c: c itself, or the connection under a
// *tls.Conn or any wrapper with a NetConn method, however deep.
func FromConn(c net.Conn) (*Conn, bool) {
	for range 16 {
		switch v := c.(type) {
		case *Conn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}
