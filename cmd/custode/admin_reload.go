package main

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

// tokenFile is the API's token file, read again when it changes: a token
// made by custode api token works at once, without a restart. A file that
// no longer parses keeps the last good tokens in force, and is logged.
type tokenFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	cur     *httpapi.Tokens
	modTime time.Time
	size    int64
}

// newTokenFile reads the token file at path; a missing one holds none.
func newTokenFile(path string, log *slog.Logger) (*tokenFile, error) {
	t := &tokenFile{path: path, log: log}
	if err := t.reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// get returns the tokens in force, after reading the file again if it
// changed.
func (t *tokenFile) get() *httpapi.Tokens {
	if err := t.reload(false); err != nil {
		t.log.Error("api: the token file: keeping the tokens read before", "err", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

// reload reads the file again if it changed since the last read, or
// always with force.
func (t *tokenFile) reload(force bool) error {
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

// certificate is a TLS certificate read again on demand (SIGHUP): the
// listeners' GetCertificate gives the newest, so a renewed certificate is
// served without a restart. A pair that no longer loads keeps the last
// good one in force.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// newCertificate loads the pair.
func newCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload loads the pair again.
func (c *certificate) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s: %w", c.certFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// get is a tls.Config's GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// use makes cfg serve c's newest certificate.
func (c *certificate) use(cfg *tls.Config) {
	cfg.Certificates = nil
	cfg.GetCertificate = c.get
}

// reloaders are what a running server reads again on SIGHUP, or after an
// administrative command: tokens, the TLS certificate. Holds, policies and
// mailboxes need none: the hold registry and the policy watcher read their
// files again when they change, and the mailbox store is shared.
type reloaders struct {
	tokens *tokenFile   // nil without the API
	cert   *certificate // nil without a TLS certificate
	log    *slog.Logger
}

// reload reads everything again, logging what failed.
func (r *reloaders) reload() {
	if r.tokens != nil {
		if err := r.tokens.reload(true); err != nil {
			r.log.Error("reload: api tokens: keeping the ones read before", "err", err)
		} else {
			r.log.Info("reload: api tokens", "tokens", r.tokens.get().Len())
		}
	}
	if r.cert != nil {
		if err := r.cert.reload(); err != nil {
			r.log.Error("reload: keeping the TLS certificate loaded before", "err", err)
		} else {
			r.log.Info("reload: TLS certificate", "file", r.cert.certFile)
		}
	}
}

// reloadOnSIGHUP calls r.reload at every SIGHUP until ctx is done.
func reloadOnSIGHUP(ctx context.Context, r *reloaders) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP: reloading tokens, TLS certificate (policies and holds are read again when they change)")
			r.reload()
		}
	}
}

// serveAdmin opens the admin socket and serves it until ctx is done: the
// administrative commands run over the server's own stores.
func serveAdmin(ctx context.Context, e *cli.Env, c *config.Config, l *ledger.Ledger, mailboxes *mailstore.Store, r *reloaders, wg *sync.WaitGroup) error {
	path := c.AdminSocketPath()
	ln, err := listenAdmin(path)
	if err != nil {
		return err
	}
	holds, err := retention.OpenRegistry(c.HoldsFile())
	if err != nil {
		return err
	}
	s := &adminServer{
		live: &cli.Live{Dir: c.Dir, Ledger: l, Mailboxes: mailboxes, Holds: holds, Changed: func() {
			if r.tokens != nil {
				if err := r.tokens.reload(false); err != nil {
					e.Log.Error("api tokens", "err", err)
				}
			}
		}},
		log: e.Log,
		uid: os.Getuid(),
	}
	e.Log.Info("admin socket listening", "path", path, "mode", "0600")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.serve(ctx, ln); err != nil {
			e.Log.Error("admin: serve", "err", err)
		}
	}()
	return nil
}
