package imapserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"

	"github.com/custode/custode/pec/connlimit"
	"github.com/custode/custode/pec/mailstore"
)

// DefaultAppendLimit is the largest message a client may APPEND when
// Options.AppendLimit is 0.
const DefaultAppendLimit = 64 << 20

// Default limits of the sessions, so that no client holds a connection
// forever.
const (
	// DefaultPreAuthTimeout is how long a client has, from its connection,
	// to log in; NOOP, CAPABILITY and the like do not extend it.
	DefaultPreAuthTimeout = time.Minute
	// DefaultMaxSessionTime is how long a logged-in session may last out
	// of IDLE: after it, from the login or the end of the last IDLE, the
	// connection closes and the client reconnects. IDLE itself is bounded
	// by go-imap's 35 minutes, after which the client issues it again.
	DefaultMaxSessionTime = time.Hour
)

// Options configures [New].
type Options struct {
	// Store holds the mailboxes served. Required.
	Store *mailstore.Store
	// TLSConfig enables STARTTLS. For implicit TLS (IMAPS, port 993) the
	// caller passes Serve a listener wrapped with tls.NewListener. Without
	// TLS clients cannot authenticate, unless InsecureAuth is set.
	TLSConfig *tls.Config
	// Logger receives the server's logs; nil discards them. Passwords never
	// reach it.
	Logger *slog.Logger
	// InsecureAuth allows LOGIN and AUTHENTICATE on connections without
	// TLS. For tests only: by default they are refused until STARTTLS.
	InsecureAuth bool
	// Greeting replaces the text of the server's greeting line, e.g.
	// "pec.example.it IMAP ready" ("" keeps go-imap's). It applies to
	// connections that start in clear text (STARTTLS); on connections a
	// TLS listener accepted go-imap's text stays, since the greeting is
	// encrypted before this package could rewrite it.
	Greeting string
	// AppendLimit is the largest message accepted by APPEND, in bytes;
	// 0 means DefaultAppendLimit. It is capped at mailstore.MaxMessageSize.
	AppendLimit uint32
	// Limits caps the connections Serve accepts, overall and per client
	// address; the zero value gives connlimit's defaults. Its Ceiling is
	// PreAuthTimeout.
	Limits connlimit.Options
	// PreAuthTimeout bounds the time to log in; zero means
	// DefaultPreAuthTimeout.
	PreAuthTimeout time.Duration
	// MaxSessionTime bounds a logged-in session out of IDLE; zero means
	// DefaultMaxSessionTime.
	MaxSessionTime time.Duration
}

// Server is an IMAP server over a mailstore. It is safe for concurrent use.
type Server struct {
	store       *mailstore.Store
	log         *slog.Logger
	greeting    string
	appendLimit uint32
	imap        *goimapserver.Server
	limits      connlimit.Options
	maxSession  time.Duration

	ctx    context.Context // cancelled by Close: stops the sessions' store calls
	cancel context.CancelFunc
	closed atomic.Bool
}

// New returns a server for opts. It fails if opts.Store is nil.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("imapserver: new: no store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := opts.AppendLimit
	if limit == 0 {
		limit = DefaultAppendLimit
	}
	limit = min(limit, mailstore.MaxMessageSize)
	correctClientBugReply()
	if opts.PreAuthTimeout <= 0 {
		opts.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if opts.MaxSessionTime <= 0 {
		opts.MaxSessionTime = DefaultMaxSessionTime
	}
	opts.Limits.Ceiling = opts.PreAuthTimeout
	opts.Limits.Refusal = nil
	if opts.Limits.Logger == nil {
		opts.Limits.Logger = log
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		limits:      opts.Limits,
		maxSession:  opts.MaxSessionTime,
		store:       opts.Store,
		log:         log,
		greeting:    sanitize(opts.Greeting),
		appendLimit: limit,
		ctx:         ctx,
		cancel:      cancel,
	}
	s.imap = goimapserver.New(&goimapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {},
			imap.CapUIDPlus:   {},
			imap.CapMove:      {},
			imap.CapNamespace: {},
			imap.CapChildren:  {},
		},
		Logger:       imapLogger{log},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.InsecureAuth,
	})
	return s, nil
}

// Serve accepts IMAP connections on ln (plain, with STARTTLS if configured,
// or already TLS if ln makes them so) until ln is closed or Close is called;
// then it returns nil. Other accept errors are returned. Connections are
// capped and timed as Options.Limits, PreAuthTimeout and MaxSessionTime
// say, except those that ln itself makes TLS connections (a
// tls.NewListener): the caps cannot sit under their TLS. Use ServeTLS for
// implicit TLS under the caps.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(connlimit.NewListener(ln, s.limits), nil)
}

// ServeTLS accepts IMAP connections with implicit TLS (IMAPS, port 993)
// on ln, a plain listener, with config, under the caps and timeouts of
// Serve.
func (s *Server) ServeTLS(ln net.Listener, config *tls.Config) error {
	return s.serve(connlimit.NewListener(ln, s.limits), config)
}

func (s *Server) serve(capped *connlimit.Listener, config *tls.Config) error {
	var ln net.Listener = &listener{Listener: capped, greeting: s.greeting}
	if config != nil {
		ln = tls.NewListener(ln, config)
	}
	if err := s.imap.Serve(ln); err != nil {
		return fmt.Errorf("imapserver: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Close closes the listeners and every connection, and cancels the
// sessions' pending store calls. It does not close the Store.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return errors.New("imapserver: close: already closed")
	}
	s.cancel()
	if err := s.imap.Close(); err != nil {
		return fmt.Errorf("imapserver: close: %w", err)
	}
	return nil
}

func (s *Server) newSession(c *goimapserver.Conn) (goimapserver.Session, *goimapserver.GreetingData, error) {
	remote := ""
	if addr := c.NetConn().RemoteAddr(); addr != nil {
		remote = addr.String()
		if host, _, err := net.SplitHostPort(remote); err == nil {
			remote = host
		}
	}
	sess := &session{
		srv:    s,
		conn:   c,
		remote: remote,
		log:    s.log.With("remote", remote),
		wake:   make(chan struct{}, 1),
	}
	return sess, nil, nil
}

// listener replaces the greeting's text of the connections it accepts
// from a connlimit listener, if greeting is not empty, and hands go-imap
// the *tls.Conn a caller's TLS listener made as it is.
type listener struct {
	net.Listener
	greeting string
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if lc, ok := c.(*connlimit.Conn); ok {
		if tc, ok := lc.Conn.(*tls.Conn); ok {
			// Wrapping would hide TLS from go-imap, which would then
			// refuse to authenticate: such connections keep the default
			// greeting, and are not capped.
			lc.Detach()
			return tc, nil
		}
	}
	if l.greeting == "" {
		return c, nil
	}
	return &greetingConn{Conn: c, text: l.greeting}, nil
}

// greetingConn replaces the text of the first line written to it (the
// greeting, "* OK [CAPABILITY ...] text") with text.
type greetingConn struct {
	net.Conn
	text string

	mu   sync.Mutex
	done bool
	buf  []byte
}

// NetConn returns the connection under c.
func (c *greetingConn) NetConn() net.Conn { return c.Conn }

func (c *greetingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	i := bytes.Index(c.buf, []byte("\r\n"))
	if i < 0 && len(c.buf) < 64<<10 {
		return len(p), nil
	}
	c.done = true
	out := c.buf
	if i >= 0 {
		line := c.buf[:i]
		if j := bytes.LastIndex(line, []byte("] ")); j >= 0 && bytes.HasPrefix(line, []byte("* OK ")) {
			out = append(append(append([]byte{}, line[:j+2]...), c.text...), c.buf[i:]...)
		}
	}
	c.buf = nil
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sanitize makes s safe as the text of a response line.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.TrimSpace(s)
}

// imapLogger routes go-imap's logs to slog. Reading a command fails every
// time a client goes away, so those are debug logs.
type imapLogger struct{ l *slog.Logger }

func (l imapLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "failed to read command") || strings.HasPrefix(msg, "failed to write greeting") {
		l.l.Debug("imapserver: " + msg)
		return
	}
	l.l.Warn("imapserver: " + msg)
}
