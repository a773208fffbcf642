package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/retention"
)

// TokenFile is the API's token file, read again when it changes: a token
// made by custode api token works at once, without a restart. A file that
// no longer parses keeps the last good tokens in force, and is logged.
type TokenFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	cur     *httpapi.Tokens
	modTime time.Time
	size    int64
}

// NewTokenFile reads the token file at path; a missing one holds none.
func NewTokenFile(path string, log *slog.Logger) (*TokenFile, error) {
	t := &TokenFile{path: path, log: log}
	if err := t.Reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// Get returns the tokens in force, after reading the file again if it
// changed.
func (t *TokenFile) Get() *httpapi.Tokens {
	if err := t.Reload(false); err != nil {
		t.log.Error("api: the token file: keeping the tokens read before", "err", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

// Reload reads the file again if it changed since the last read, or
// always with force.
func (t *TokenFile) Reload(force bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		t.cur, t.modTime, t.size = nil, time.Time{}, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("api: tokens: %w", err)
	}
	if !force && st.ModTime().Equal(t.modTime) && st.Size() == t.size && t.cur != nil {
		return nil
	}
	toks, err := httpapi.LoadTokens(t.path)
	if errors.Is(err, os.ErrNotExist) {
		toks, err = httpapi.ParseTokens(bytes.NewReader(nil))
	}
	if err != nil {
		return err
	}
	t.cur, t.modTime, t.size = toks, st.ModTime(), st.Size()
	return nil
}

// Certificate is a TLS certificate read again on demand (SIGHUP): the
// listeners' GetCertificate gives the newest, so a renewed certificate is
// served without a restart. A pair that no longer loads keeps the last
// good one in force.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// NewCertificate loads the pair.
func NewCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload loads the pair again.
func (c *Certificate) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s: %w", c.certFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// Current is the certificate loaded last.
func (c *Certificate) Current() *tls.Certificate { return c.cur.Load() }

// Get is a tls.Config's GetCertificate.
func (c *Certificate) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// Use makes cfg serve c's newest certificate.
func (c *Certificate) Use(cfg *tls.Config) {
	cfg.Certificates = nil
	cfg.GetCertificate = c.Get
}

// Reloaders are what a running server reads again on SIGHUP, or after an
// administrative command: tokens, the TLS certificate. Holds, policies and
// mailboxes need none: the hold registry and the policy watcher read their
// files again when they change, and the mailbox store is shared.
type Reloaders struct {
	Tokens *TokenFile   // nil without the API
	Cert   *Certificate // nil without a TLS certificate
	Log    *slog.Logger
}

// Reload reads everything again, logging what failed.
func (r *Reloaders) Reload() {
	if r.Tokens != nil {
		if err := r.Tokens.Reload(true); err != nil {
			r.Log.Error("reload: api tokens: keeping the ones read before", "err", err)
		} else {
			r.Log.Info("reload: api tokens", "tokens", r.Tokens.Get().Len())
		}
	}
	if r.Cert != nil {
		if err := r.Cert.Reload(); err != nil {
			r.Log.Error("reload: keeping the TLS certificate loaded before", "err", err)
		} else {
			r.Log.Info("reload: TLS certificate", "file", r.Cert.certFile)
		}
	}
}

// ReloadOnSIGHUP calls r.reload at every SIGHUP until ctx is done.
func ReloadOnSIGHUP(ctx context.Context, r *Reloaders) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.Log.Info("SIGHUP: reloading tokens, TLS certificate (policies and holds are read again when they change)")
			r.Reload()
		}
	}
}

// Serve opens the admin socket and serves it until ctx is done: the
// administrative commands run over the server's own stores.
func Serve(ctx context.Context, e *cli.Env, c *config.Config, l *ledger.Ledger, mailboxes *mailstore.Store, r *Reloaders, cmds Commands, wg *sync.WaitGroup) error {
	path := c.AdminSocketPath()
	ln, err := Listen(path)
	if err != nil {
		return err
	}
	holds, err := retention.OpenRegistry(c.HoldsFile())
	if err != nil {
		return err
	}
	s := &Server{
		Commands: cmds,
		Live: &cli.Live{Dir: c.Dir, Ledger: l, Mailboxes: mailboxes, Holds: holds, Changed: func() {
			if r.Tokens != nil {
				if err := r.Tokens.Reload(false); err != nil {
					e.Log.Error("api tokens", "err", err)
				}
			}
		}},
		Log: e.Log,
		UID: os.Getuid(),
	}
	e.Log.Info("admin socket listening", "path", path, "mode", "0600")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Serve(ctx, ln); err != nil {
			e.Log.Error("admin: serve", "err", err)
		}
	}()
	return nil
}
