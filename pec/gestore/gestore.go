package gestore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/clamd"
	"github.com/custode/custode/pec/connlimit"
	"github.com/custode/custode/pec/igpec"
)

// Default limits of the formal checks (RFC 6109 §3.1.1).
const (
	// DefaultMaxSize is the limit on a message's size times the number of
	// its recipients: 30 MiB, 31,457,280 bytes (the "30 MB" of the
	// rules). The rule is exact: a message of S bytes (as received, CRLF
	// line ends, after the dot-unstuffing of DATA) for R recipients is
	// accepted when S × R ≤ MaxSize, and refused when S × R > MaxSize,
	// however the excess is found: SIZE at MAIL (go-smtp's 552 5.3.4,
	// before any transaction; MaxSize is what EHLO advertises as SIZE),
	// the size of one message while DATA reads it (S > MaxSize), or S × R
	// after DATA. The two after MAIL get the same treatment: an avviso di
	// non accettazione to the titolare, a refusal entry in the ledger,
	// and the reply 552 5.3.4 with the identificativo of the avviso, all
	// under the reason ReasonTooLarge.
	DefaultMaxSize = 30 << 20
	// DefaultMaxRecipients is the largest number of recipients a message
	// may have. The punto di accesso advertises Options.MaxRecipients in
	// EHLO (LIMITS RCPTMAX=N, RFC 9422) and enforces it exactly: N
	// recipients are accepted, the N+1th RCPT gets 452 4.5.3.
	DefaultMaxRecipients = 50
	// MaxProtocolRecipients is the RCPTMAX of the punto di ricezione
	// (advertised and enforced as at the punto di accesso: the 1001st
	// RCPT of a transaction gets 452 4.5.3), and the largest
	// Options.MaxRecipients. Another gestore sends a busta for all its
	// recipients in our domains in one transaction.
	MaxProtocolRecipients = 1000
)

// Scanner finds viruses in a message. *clamd.Client is one.
type Scanner interface {
	Scan(ctx context.Context, data []byte) (clamd.Result, error)
}

// NonPECPolicy says what the punto di ricezione does with ordinary (non-PEC)
// mail addressed to a mailbox.
type NonPECPolicy string

// The handling of ordinary mail the seeds describe.
const (
	// NonPECAnomalia delivers it wrapped in a busta di anomalia (RFC 6109
	// §3.2.2); the default.
	NonPECAnomalia NonPECPolicy = "anomalia"
	// NonPECReject refuses it at the SMTP level.
	NonPECReject NonPECPolicy = "reject"
	// NonPECFolder files it, unwrapped, in the folder NonPECFolderName.
	NonPECFolder NonPECPolicy = "folder"
	// NonPECForward sends it on, unwrapped, to the mailbox policy's
	// ForwardTo address, an ordinary mailbox.
	NonPECForward NonPECPolicy = "forward"
)

// MailboxPolicy is what a titolare chose for their mailbox, as the
// providers' offers describe: the handling of ordinary mail and a notice
// of arrival to an ordinary address.
type MailboxPolicy struct {
	// NonPEC is the handling of ordinary mail; empty means the server's
	// default (Options.NonPEC).
	NonPEC NonPECPolicy
	// ForwardTo is where NonPECForward sends ordinary mail.
	ForwardTo string
	// NotifyTo, if not empty, is an ordinary address that gets a notice
	// of arrival for each busta di trasporto delivered to the mailbox.
	NotifyTo string
}

// NonPECFolderName is the folder NonPECFolder files ordinary mail in.
const NonPECFolderName = "Posta ordinaria"

// Options configures a Server.
type Options struct {
	// Gestore signs every busta, ricevuta and avviso the server emits.
	Gestore *pec.Gestore
	// Domains are the PEC domains whose mailboxes the server keeps; empty
	// means the Gestore's domain alone.
	Domains []string
	// Index is the indice dei gestori, which must include this gestore.
	Index *igpec.Index
	// Ledger receives every event, durably, before any reply depends on
	// it; *ledger.Ledger is one.
	Ledger Ledger
	// Mailboxes is the mailbox store; *mailstore.Store is one.
	Mailboxes Mailboxes
	// Queue holds outgoing messages durably until they are delivered;
	// *queue.Queue is one.
	Queue Outbox
	// Scanner, if not nil, scans every message submitted or received.
	Scanner Scanner
	// Quarantine, if not nil, keeps every message the scanner finds
	// infected, before the refusal is recorded and answered.
	Quarantine Quarantine
	// Archive, if not nil, is given every signed message sent or received.
	Archive Archiver
	// Routes maps a domain to the host:port of its SMTP server; a domain
	// without a route is reached through its MX records on port 25.
	Routes map[string]string
	// TLS is the server's certificate configuration for STARTTLS and
	// implicit TLS. Required.
	TLS *tls.Config
	// ClientTLS verifies other gestori when sending to them; nil means
	// the system roots.
	ClientTLS *tls.Config
	// Hostname is the name the server gives in its greeting and Received
	// fields; empty means the Gestore's domain.
	Hostname string
	// MaxSize bounds a message's size times its recipients (see
	// DefaultMaxSize for the exact rule); zero means DefaultMaxSize.
	MaxSize int64
	// MaxRecipients bounds the recipients of one message submitted at the
	// punto di accesso, advertised in EHLO as LIMITS RCPTMAX; zero means
	// DefaultMaxRecipients, at most MaxProtocolRecipients.
	MaxRecipients int
	// NonPEC is the handling of ordinary mail; empty means NonPECAnomalia.
	NonPEC NonPECPolicy
	// Policy, if not nil, returns the policy of a mailbox of ours; nil
	// means the defaults for every mailbox.
	Policy func(mailbox string) MailboxPolicy
	// Timeout is how long an SMTP session may stay silent; zero means
	// five minutes.
	Timeout time.Duration
	// Limits caps each SMTP listener's connections, overall and per
	// client address; the zero value gives connlimit's defaults. Its
	// Refusal and Ceiling are the server's own.
	Limits connlimit.Options
	// PreMailTimeout is how long a session has, from its connection or
	// from the end of its last message, to give a MAIL command; zero means
	// DefaultPreMailTimeout.
	PreMailTimeout time.Duration
	// MaxSessionTime bounds a session's length; zero means
	// DefaultMaxSessionTime.
	MaxSessionTime time.Duration
	// MaxTransactions bounds the messages and RSETs of a session; zero
	// means DefaultMaxTransactions.
	MaxTransactions int
	// MaxData and MaxDataPerAddress bound the messages in transfer at once
	// over the server's listeners, overall and from one client address; zero means
	// DefaultMaxData and DefaultMaxDataPerAddress. A DATA beyond them gets
	// 451 4.3.2 and its body is discarded as it arrives. At the punto di
	// ricezione, the messages of the addresses other gestori have
	// delivered from (see PeersFile) count apart, against MaxData of
	// their own, and have a MaxDataMemory of their own.
	MaxData, MaxDataPerAddress int
	// SpoolDir is where messages larger than SpoolThreshold wait, in
	// unlinked files, until there is memory to process them; empty means
	// os.TempDir(). New creates it if missing. A gestore passes a
	// directory of its data directory.
	SpoolDir string
	// SpoolThreshold is the size above which a message is spooled; zero
	// means DefaultSpoolThreshold.
	SpoolThreshold int64
	// MaxDataMemory bounds the bytes of spooled messages processed at
	// once; zero means DefaultMaxDataMemory.
	MaxDataMemory int64
	// MaxStrangerSpool bounds the strangers' messages (at the punto di
	// ricezione, from an address no gestore has delivered from) read past
	// SpoolThreshold, or processed, at once; the next waits, unread; zero
	// means DefaultMaxStrangerSpool.
	MaxStrangerSpool int
	// PeersFile keeps, across restarts, the addresses from which other
	// gestori have delivered, which the punto di ricezione lets in beside
	// the strangers' connections (see DefaultPeersFile); empty means
	// DefaultPeersFile in SpoolDir if SpoolDir is set, else they are kept
	// in memory only.
	PeersFile string
	// TrackInterval is how often the tracker looks for overdue
	// transactions (see Track); zero means 30 seconds.
	TrackInterval time.Duration
	// Now is the clock; nil means time.Now. The tracker's 12 and 24 hours
	// are measured on it.
	Now func() time.Time
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server is one PEC gestore: its punto di accesso, punto di ricezione and
// punto di consegna, the outbound queue's deliveries and the tracker of
// outstanding transactions. Make one with New.
type Server struct {
	opts    Options
	lim     *limits
	g       *pec.Gestore
	log     *slog.Logger
	now     func() time.Time
	domains map[string]bool

	trackMu  sync.Mutex     // one Track at a time
	tracker  *tracker       // the deadline table; guarded by trackMu
	refusals refusalLimiter // bounds the refusal entries of the ledger

	mu         sync.Mutex
	servers    []*smtp.Server
	committing map[string]*commitState // queue items whose commit is under way
	committed  map[string]bool         // queue items committed by this run, not yet delivered
	idle       map[string][]*idleConn  // SMTP sessions to other servers, by address
	closed     bool
}

// New checks opts and returns a Server. It starts nothing: call Run for
// the queue and the tracker, and Serve* for each listener.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Gestore == nil:
		return nil, errors.New("gestore: no Gestore")
	case opts.Index == nil:
		return nil, errors.New("gestore: no indice dei gestori")
	case isNil(opts.Ledger):
		return nil, errors.New("gestore: no ledger")
	case isNil(opts.Mailboxes):
		return nil, errors.New("gestore: no mailbox store")
	case isNil(opts.Queue):
		return nil, errors.New("gestore: no queue")
	case opts.TLS == nil:
		return nil, errors.New("gestore: no TLS configuration")
	}
	if len(opts.Domains) == 0 {
		opts.Domains = []string{opts.Gestore.Domain()}
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.Gestore.Domain()
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = DefaultMaxRecipients
	}
	if opts.MaxRecipients > MaxProtocolRecipients {
		return nil, fmt.Errorf("gestore: MaxRecipients %d above %d", opts.MaxRecipients, MaxProtocolRecipients)
	}
	switch opts.NonPEC {
	case "":
		opts.NonPEC = NonPECAnomalia
	case NonPECAnomalia, NonPECReject, NonPECFolder:
	default: // NonPECForward needs a ForwardTo: a mailbox policy only
		return nil, fmt.Errorf("gestore: unknown handling of ordinary mail %q", opts.NonPEC)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	// Sessions to other gestori are resumed (TLS 1.3 tickets): a resumed
	// handshake costs the peer no RSA signature.
	if opts.ClientTLS == nil {
		opts.ClientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		opts.ClientTLS = opts.ClientTLS.Clone()
	}
	if opts.ClientTLS.ClientSessionCache == nil {
		opts.ClientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	if opts.TrackInterval <= 0 {
		opts.TrackInterval = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if _, ok := opts.Index.ProviderByDomain(opts.Gestore.Domain()); !ok {
		return nil, fmt.Errorf("gestore: the indice dei gestori has no provider for our domain %s", opts.Gestore.Domain())
	}
	lim := newLimits(&opts)
	if err := os.MkdirAll(opts.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("gestore: spool directory: %w", err)
	}
	s := &Server{
		lim:     lim,
		opts:    opts,
		g:       opts.Gestore,
		log:     opts.Logger,
		now:     opts.Now,
		domains: make(map[string]bool),

		committing: make(map[string]*commitState),
		committed:  make(map[string]bool),
		idle:       make(map[string][]*idleConn),
	}
	for _, d := range opts.Domains {
		s.domains[igpec.NormalizeDomain(d)] = true
	}
	return s, nil
}

// isNil reports whether v is nil, or an interface holding a nil pointer
// (a *ledger.Ledger never opened, say).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// policy returns the policy of mailbox, with the server's defaults filled
// in.
func (s *Server) policy(mailbox string) MailboxPolicy {
	var p MailboxPolicy
	if s.opts.Policy != nil {
		p = s.opts.Policy(mailbox)
	}
	if p.NonPEC == "" || (p.NonPEC == NonPECForward && p.ForwardTo == "") {
		p.NonPEC = s.opts.NonPEC
	}
	return p
}

// ours reports whether address is in one of the server's domains.
func (s *Server) ours(address string) bool {
	return s.domains[domainOf(address)]
}

func domainOf(address string) string {
	i := strings.LastIndexByte(address, '@')
	if i < 0 {
		return ""
	}
	return igpec.NormalizeDomain(address[i+1:])
}

// smtpServer makes a go-smtp server for one of the points, its sessions
// under the server's limits.
func (s *Server) smtpServer(be smtp.Backend, maxBytes int64, maxRcpts int) *smtp.Server {
	srv := smtp.NewServer(limitedBackend{s: s, be: be})
	srv.Domain = s.opts.Hostname
	srv.TLSConfig = s.opts.TLS
	srv.MaxRecipients = maxRcpts // advertised as LIMITS RCPTMAX and enforced
	srv.MaxMessageBytes = maxBytes
	srv.MaxLineLength = 2000
	srv.ReadTimeout = s.opts.Timeout
	srv.WriteTimeout = s.opts.Timeout
	srv.ErrorLog = slogErrorLog{s.log}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	return srv
}

// ServeSubmission serves the punto di accesso on ln: titolari submit over
// STARTTLS and must authenticate first. With implicit set, ln's
// connections start with TLS (the submissions port). The connections are
// capped as Options.Limits says, and the sessions timed and bounded as
// the other Options say.
func (s *Server) ServeSubmission(ln net.Listener, implicit bool) error {
	ln = s.listen(ln, !implicit, false)
	if implicit {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	return s.smtpServer(&accessoBackend{s: s, implicitTLS: implicit}, s.opts.MaxSize, s.opts.MaxRecipients).Serve(ln)
}

// ServeRicezione serves the punto di ricezione on ln: other gestori (and
// ordinary mail servers) deliver to our domains, with STARTTLS offered,
// under the same caps and limits as ServeSubmission.
func (s *Server) ServeRicezione(ln net.Listener) error {
	return s.smtpServer(&ricezioneBackend{s: s}, s.opts.MaxSize, MaxProtocolRecipients).Serve(s.listen(ln, true, true))
}

// Close stops every SMTP server started by Serve*. The queue, ledger and
// mailbox store belong to the caller.
func (s *Server) Close() error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	idle := s.idle
	s.idle = make(map[string][]*idleConn)
	s.closed = true
	s.mu.Unlock()
	for _, list := range idle {
		for _, ic := range list {
			ic.c.Close()
		}
	}
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run delivers the queue and runs the tracker until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- s.opts.Queue.Run(ctx, s.deliver) }()
	go func() { errc <- s.runTracker(ctx) }()
	err := <-errc
	cancel()
	err2 := <-errc
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if errors.Is(err2, context.Canceled) {
		err2 = nil
	}
	return errors.Join(err, err2)
}

type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp", "msg", fmt.Sprintf(format, v...))
}

func (l slogErrorLog) Println(v ...any) {
	l.log.Warn("smtp", "msg", fmt.Sprintln(v...))
}
