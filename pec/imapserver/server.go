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

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"

	"github.com/custode/custode/pec/mailstore"
)

// DefaultAppendLimit is the largest message a client may APPEND when
// Options.AppendLimit is 0.
const DefaultAppendLimit = 64 << 20

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
}

// Server is an IMAP server over a mailstore. It is safe for concurrent use.
type Server struct {
	store       *mailstore.Store
	log         *slog.Logger
	greeting    string
	appendLimit uint32
	imap        *goimapserver.Server

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
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
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
// then it returns nil. Other accept errors are returned.
func (s *Server) Serve(ln net.Listener) error {
	if s.greeting != "" {
		ln = &listener{Listener: ln, wrap: s.wrapGreeting}
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

// listener applies wrap to the connections it accepts.
type listener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok {
		// Wrapping would hide TLS from go-imap, which would then refuse
		// to authenticate: such connections keep the default greeting.
		return c, nil
	}
	return l.wrap(c), nil
}

// wrapGreeting returns c with the text of the first line written to it
// (the greeting, "* OK [CAPABILITY ...] text") replaced by s.greeting.
func (s *Server) wrapGreeting(c net.Conn) net.Conn {
	return &greetingConn{Conn: c, text: s.greeting}
}

type greetingConn struct {
	net.Conn
	text string

	mu   sync.Mutex
	done bool
	buf  []byte
}

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
