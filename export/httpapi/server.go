package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/pec/connlimit"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
	"github.com/custode/custode/tsa"
)

// Defaults and limits of the server.
const (
	// DefaultShutdownTimeout is how long Serve waits for requests in
	// flight once its context ends: an extract of a busy mailbox takes
	// seconds.
	DefaultShutdownTimeout = 30 * time.Second
	// MaxQueryBytes bounds a request's query string: enough for every
	// parameter at its longest useful size.
	MaxQueryBytes = 4096
	// MaxReasonBytes bounds the reason given for a request.
	MaxReasonBytes = 1024
	// maxHeaderBytes bounds a request's header.
	maxHeaderBytes = 16 << 10
	// writeTimeout bounds building and sending one answer: an extract of
	// 100,000 transactions.
	writeTimeout = 5 * time.Minute
)

//go:embed openapi.json
var openAPI []byte

// Options configure a Server.
type Options struct {
	// Ledger is queried, and records every request. Required.
	Ledger *ledger.Ledger
	// Store is the archive holding the archivio di sicurezza, for the
	// original receipts of evidence bundles and the retention of sealed
	// segments in the audit report; nil means receipts are reproduced and
	// segments not checked.
	Store archive.Store
	// Mailboxes checks titolari's credentials (HTTP Basic); nil refuses
	// Basic authentication.
	Mailboxes Authenticator
	// Tokens are the bearer tokens of operators, auditors and legal users;
	// nil refuses bearer authentication.
	Tokens *Tokens
	// TokenSource, if set, returns the tokens in force; it is called on
	// every bearer authentication and may return different tokens each
	// time (a token file read again when it changes), and replaces Tokens.
	TokenSource func() *Tokens
	// Policy returns the policy in force, whose roles say who is an
	// operator, an auditor or a legal user. It is called on every request
	// and may return a different policy each time; nil from it means no
	// roles. Required.
	Policy func() *policies.Policy
	// Holds are the legal holds, which bound what legal users see; nil
	// means legal users see nothing.
	Holds *retention.Registry
	// Signer signs extracts, bundles and reproduced receipts: the gestore.
	// Required.
	Signer *smime.Signer
	// Stamper time-stamps the signatures of bundles, extracts and
	// reproduced receipts (CAdES-T) at export; nil leaves them without.
	Stamper tsa.Stamper
	// GestoreCA is the PEM trust anchors of the gestore's signatures,
	// included in exports and used by the audit. Required.
	GestoreCA []byte
	// TSACA is the PEM trust anchors of the checkpoints' timestamps; empty
	// means GestoreCA.
	TSACA []byte
	// Gestore is the gestore's name, recorded in the ledger events and
	// given to the audit.
	Gestore string
	// TLS, if set, makes Serve speak HTTPS with it (see [TLSConfig]); a
	// client certificate it verifies authenticates the user named by its
	// subject common name or, without one, its first email address.
	TLS *tls.Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// PerPrincipal and PerRemote limit requests per authenticated user
	// and per client IP address; zero values mean DefaultPerPrincipal and
	// DefaultPerRemote.
	PerPrincipal, PerRemote RateLimit
	// Limits caps the connections Serve accepts, overall and per client
	// address; the zero value gives connlimit's defaults.
	Limits connlimit.Options
}

// Server is the HTTP API. Its methods are safe for concurrent use.
type Server struct {
	ledger     *ledger.Ledger
	recorder   *record.Recorder // every request, before its answer
	store      archive.Store
	mailboxes  Authenticator
	tokens     func() *Tokens
	policy     func() *policies.Policy
	holds      *retention.Registry
	signer     *smime.Signer
	stamper    tsa.Stamper
	gestoreCA  []byte
	tsaCA      []byte
	roots      *x509.CertPool
	tsaRoots   *x509.CertPool
	gestore    string
	tls        *tls.Config
	now        func() time.Time
	log        *slog.Logger
	byUser     *limiter
	byRemote   *limiter
	handler    http.Handler
	routePaths []route
	limits     connlimit.Options
}

// route is one endpoint of the API, as the OpenAPI document lists it.
type route struct {
	method, path string
}

// New checks opts and returns a server.
func New(opts Options) (*Server, error) {
	if opts.Ledger == nil {
		return nil, errors.New("httpapi: no ledger")
	}
	if opts.Policy == nil {
		return nil, errors.New("httpapi: no policy")
	}
	if opts.Signer == nil || opts.Signer.Certificate == nil || opts.Signer.Key == nil {
		return nil, errors.New("httpapi: no signer for exports")
	}
	s := &Server{
		ledger: opts.Ledger, store: opts.Store, mailboxes: opts.Mailboxes, tokens: opts.TokenSource,
		policy: opts.Policy, holds: opts.Holds, signer: opts.Signer, stamper: opts.Stamper, gestoreCA: opts.GestoreCA,
		tsaCA: opts.TSACA, gestore: opts.Gestore, tls: opts.TLS, now: opts.Now, log: opts.Logger,
		limits: opts.Limits,
	}
	if s.tokens == nil {
		tokens := opts.Tokens
		s.tokens = func() *Tokens { return tokens }
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.recorder = record.New(opts.Ledger, opts.Gestore, s.now)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if len(s.tsaCA) == 0 {
		s.tsaCA = s.gestoreCA
	}
	s.roots = x509.NewCertPool()
	if !s.roots.AppendCertsFromPEM(s.gestoreCA) {
		return nil, errors.New("httpapi: GestoreCA holds no PEM certificate")
	}
	s.tsaRoots = x509.NewCertPool()
	if !s.tsaRoots.AppendCertsFromPEM(s.tsaCA) {
		return nil, errors.New("httpapi: TSACA holds no PEM certificate")
	}
	for _, rl := range []*RateLimit{&opts.PerPrincipal, &opts.PerRemote} {
		if rl.Rate < 0 || rl.Burst < 0 || (rl.Rate == 0) != (rl.Burst == 0) {
			return nil, fmt.Errorf("httpapi: rate limit %+v: want a positive rate and burst, or neither", *rl)
		}
	}
	if opts.PerPrincipal == (RateLimit{}) {
		opts.PerPrincipal = DefaultPerPrincipal
	}
	if opts.PerRemote == (RateLimit{}) {
		opts.PerRemote = DefaultPerRemote
	}
	s.byUser, s.byRemote = newLimiter(opts.PerPrincipal), newLimiter(opts.PerRemote)

	s.buildHandler()
	return s, nil
}

// buildHandler registers the routes of the API.
func (s *Server) buildHandler() {
	mux := http.NewServeMux()
	add := func(path string, h http.HandlerFunc) {
		mux.Handle("GET "+path, h)
		s.routePaths = append(s.routePaths, route{http.MethodGet, path})
	}
	add("/openapi.json", s.serveOpenAPI)
	add("/v1/entries", s.endpoint(ledger.KindQuery, []string{"identificativo", "message_id", "mailbox", "kind", "from", "to", "limit", "cursor"}, s.entries))
	add("/v1/entries/{seq}", s.endpoint(ledger.KindQuery, nil, s.entry))
	add("/v1/checkpoints/latest", s.endpoint(ledger.KindQuery, nil, s.latestCheckpoint))
	add("/v1/exports/extract", s.endpoint(ledger.KindExport, []string{"mailbox", "from", "to"}, s.extract))
	add("/v1/exports/receipt", s.endpoint(ledger.KindExport, []string{"identificativo", "kind", "recipient"}, s.receipt))
	add("/v1/audit", s.endpoint(ledger.KindExport, []string{"from", "to"}, s.audit))
	s.handler = s.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own 404 or 405, as JSON.
		cw := &codeWriter{header: http.Header{}}
		h.ServeHTTP(cw, r)
		if allow := cw.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if cw.code == http.StatusMethodNotAllowed {
			writeError(w, cw.code, "method_not_allowed", "method not allowed: see /openapi.json")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: see /openapi.json")
	}))
}

// codeWriter keeps the status and header a handler writes, and drops the
// body.
type codeWriter struct {
	header http.Header
	code   int
}

func (w *codeWriter) Header() http.Header         { return w.header }
func (w *codeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *codeWriter) WriteHeader(code int)        { w.code = code }

// Handler returns the API's handler, with its rate limits and recovery.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting, and waits up to DefaultShutdownTimeout for requests
// in flight. With Options.TLS it speaks HTTPS. Its connections are capped
// as Options.Limits says; a client gets 10 s to send a request's header
// and keeps an idle connection 2 minutes.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	lo := s.limits
	if lo.Logger == nil {
		lo.Logger = s.log
	}
	ln = connlimit.NewListener(ln, lo)
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	if s.tls != nil {
		srv.TLSConfig = s.tls.Clone()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		s.log.Warn("httpapi: serving plain HTTP: credentials cross the network in clear unless a TLS proxy is in front", "addr", ln.Addr().String())
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("httpapi: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("httpapi: serve: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpapi: serve: %w", err)
	}
	return nil
}

// guard wraps every request: the per-address rate limit, a JSON 500
// instead of a panic, security headers, and a log line.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		remote := remoteIP(r)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("httpapi: panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			s.log.Info("httpapi: request", "method", r.Method, "path", clip(r.URL.Path, 256), "remote", remote,
				"status", sw.status, "elapsed", time.Since(start).Round(time.Microsecond))
		}()
		h := sw.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		if ok, wait := s.byRemote.allow(remote, s.now()); !ok {
			if r.Header.Get("Authorization") != "" && s.mailboxes != nil {
				// A login refused unchecked: counted like the others.
				user, _, _ := r.BasicAuth()
				s.mailboxes.RecordFailedLogin(mailstore.ServiceAPI, user, remote, true)
			}
			tooMany(sw, wait)
			return
		}
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
	writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests: try again later")
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return clip(r.RemoteAddr, 64)
	}
	return host
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPI)))
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(openAPI)
}

// apiError is the JSON body of every error.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// writeJSON writes v as JSON, HTML characters as they are (entries carry
// their canonical bytes), with its length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status, b = http.StatusInternalServerError, *bytes.NewBufferString(`{"error":"internal error","code":"internal"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// clip shortens s to at most n bytes, on a rune boundary, and makes it
// valid UTF-8 without NUL bytes: fit for a log or a ledger detail.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
