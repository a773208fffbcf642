package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/cmd/internal/admin"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/retention"
)

// serveAPI serves the HTTP API over TLS until ctx is done.
// The token file is read again when it changes, the TLS certificate on
// SIGHUP (r).
func serveAPI(ctx context.Context, e *cli.Env, c *config.Config, l *ledger.Ledger, store archive.Store, mailboxes *mailstore.Store, r *admin.Reloaders, wg *sync.WaitGroup) error {
	ac := c.EffectiveAPI()
	if ac.Listen == "" {
		return nil
	}
	tokens, err := admin.NewTokenFile(c.Path(ac.Tokens), e.Log)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	r.Tokens = tokens
	holds, err := retention.OpenRegistry(c.HoldsFile())
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	ident, err := c.ExportIdentity()
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	srv := c.Server
	if srv == nil {
		srv = config.DefaultServerConfig()
	}
	if r.Cert == nil {
		if r.Cert, err = admin.NewCertificate(c.Path(srv.TLSCert), c.Path(srv.TLSKey)); err != nil {
			return fmt.Errorf("api: %w", err)
		}
	}
	var clientCAs *x509.CertPool
	if ac.ClientCA != "" {
		if clientCAs, err = pki.LoadPool(c.Path(ac.ClientCA)); err != nil {
			return fmt.Errorf("api: client_ca: %w", err)
		}
	}
	tlsConfig := httpapi.TLSConfig(*r.Cert.Current(), clientCAs)
	r.Cert.Use(tlsConfig)
	api, err := httpapi.New(httpapi.Options{
		Ledger: l, Store: store, Mailboxes: mailboxes, TokenSource: tokens.Get, Policy: c.PolicyDir().Watch(e.Log.With("api", "policy")), Holds: holds,
		Signer: ident.Signer, Stamper: ident.Stamper, GestoreCA: ident.CAPEM, TSACA: ident.TSAPEM, Gestore: c.Gestore,
		TLS: tlsConfig, Logger: e.Log,
	})
	if err != nil {
		return err
	}
	ln, err := listen(ac.Listen)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	e.Log.Info("HTTP API listening", "url", "https://"+ln.Addr().String()+"/v1/", "openapi", "https://"+ln.Addr().String()+"/openapi.json",
		"tokens", tokens.Get().Len(), "mtls", clientCAs != nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := api.Serve(ctx, ln); err != nil {
			e.Log.Error("api: serve", "err", err)
		}
	}()
	return nil
}
