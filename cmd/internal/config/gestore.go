package config

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/archive/quarantine"
	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/clamd"
	"github.com/custode/custode/pec/gestore"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/queue"
	"github.com/custode/custode/pec/smime"
	policyFile "github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
)

// ArchivioFromPolicy lists the mailboxes and domains whose archivio di
// sicurezza the policy turns on.
func ArchivioFromPolicy(p *policyFile.Policy, now time.Time) []sicurezza.Policy {
	retention := p.Retention.Archivio.AddTo(now).Sub(now)
	var out []sicurezza.Policy
	for d, o := range p.Domains {
		if o.Archivio != nil && *o.Archivio {
			out = append(out, sicurezza.Policy{Mailbox: "@" + d, Quota: o.Quota, ContractEnd: o.ContractEnd, Retention: retention})
		}
	}
	for mb := range p.Mailboxes {
		if o := p.MailboxOptions(mb); o.Archivio != nil && *o.Archivio {
			out = append(out, sicurezza.Policy{Mailbox: mb, Quota: o.Quota, ContractEnd: o.ContractEnd, Retention: retention})
		}
	}
	return out
}

// ServerConfig is the "server" section of custode.json: the gestore's
// SMTP and IMAP points. Every address is host:port; an empty one is not
// served.
type ServerConfig struct {
	Submission  string `json:"submission,omitempty"`  // punto di accesso, STARTTLS
	Submissions string `json:"submissions,omitempty"` // punto di accesso, implicit TLS
	Ricezione   string `json:"ricezione,omitempty"`   // punto di ricezione
	IMAP        string `json:"imap,omitempty"`        // mailboxes, STARTTLS

	// Domains are the PEC domains whose mailboxes we keep; empty means
	// the configuration's domain.
	Domains []string `json:"domains,omitempty"`
	// TLSCert and TLSKey are the servers' certificate (PEM); custode
	// init makes a development one for 127.0.0.1 and localhost.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	// PeerCAs are PEM files of the CAs whose TLS certificates other
	// gestori present; the system roots are trusted too.
	PeerCAs []string `json:"peer_cas,omitempty"`
	// Index is the indice dei gestori (LDIF); empty means one holding
	// only this gestore.
	Index string `json:"index,omitempty"`
	// Routes maps a domain to host:port of its SMTP server, instead of
	// its MX records.
	Routes map[string]string `json:"routes,omitempty"`
	// Clamd is the virus scanner: "unix:/path/clamd.sock" or
	// "tcp:host:port"; empty means no scanning, which serve warns of at
	// start and the production profile refuses (see Antivirus).
	Clamd string `json:"clamd,omitempty"`
	// Profile is "development" (the default: empty) or "production". A
	// production gestore refuses to start without a virus scanner (Clamd)
	// unless Antivirus disables scanning explicitly.
	Profile string `json:"profile,omitempty"`
	// Antivirus, with "disabled": true, says that the gestore runs without
	// a virus scanner on purpose: the only way a production profile starts
	// without Clamd.
	Antivirus *AntivirusConfig `json:"antivirus,omitempty"`

	MaxSize       int64  `json:"max_size,omitempty"`       // bytes × recipients; default 30 MB
	MaxRecipients int    `json:"max_recipients,omitempty"` // default 50
	NonPEC        string `json:"non_pec,omitempty"`        // anomalia (default), reject or folder
	// Mailboxes holds each titolare's choices: handling of ordinary mail
	// and a notice of arrival to an ordinary address.
	Mailboxes map[string]MailboxPolicy `json:"mailboxes,omitempty"`
	// Archivio lists the mailboxes (or "@domain") whose messages go to the
	// archivio di sicurezza, with quota and contract end.
	Archivio []sicurezza.Policy `json:"archivio_di_sicurezza,omitempty"`
	// InsecureIMAPAuth allows IMAP LOGIN without TLS: tests only.
	InsecureIMAPAuth bool `json:"insecure_imap_auth,omitempty"`
	// PasswordIterations is the PBKDF2 cost of new passwords; 0 means the
	// mailbox store's default.
	PasswordIterations int `json:"password_iterations,omitempty"`
}

// Profiles of the server section.
const (
	profileDevelopment = "development"
	profileProduction  = "production"
)

// AntivirusConfig is the server section's "antivirus".
type AntivirusConfig struct {
	// Disabled runs the gestore without a virus scanner, on purpose.
	Disabled bool `json:"disabled"`
}

// Scanner returns the virus scanner the server section configures, or nil
// with none. Without one it logs a warning, and refuses, with an error
// naming the settings, a production profile that does not disable scanning
// explicitly.
func (s *ServerConfig) Scanner(e *cli.Env) (gestore.Scanner, error) {
	switch s.Profile {
	case "", profileDevelopment, profileProduction:
	default:
		return nil, fmt.Errorf(`server.profile: %q: want "development" or "production"`, s.Profile)
	}
	disabled := s.Antivirus != nil && s.Antivirus.Disabled
	if s.Clamd != "" {
		if disabled {
			return nil, errors.New(`server.clamd is set and server.antivirus.disabled is true: remove one of them`)
		}
		network, addr, ok := strings.Cut(s.Clamd, ":")
		if !ok || (network != "unix" && network != "tcp") || addr == "" {
			return nil, fmt.Errorf(`server.clamd: want "unix:/path" or "tcp:host:port", got %q`, s.Clamd)
		}
		// Every message the formal checks let through is scanned whole:
		// clamd's StreamMaxLength must be at least max_size (the README
		// says so), or clamd refuses and the message is deferred.
		maxSize := s.MaxSize
		if maxSize <= 0 {
			maxSize = gestore.DefaultMaxSize
		}
		return &clamd.Client{Network: network, Address: addr, MaxSize: maxSize}, nil
	}
	if s.Profile == profileProduction && !disabled {
		return nil, errors.New(`production profile without a virus scanner: set server.clamd in custode.json ("unix:/path/clamd.sock" or "tcp:host:port"), ` +
			`or run without scanning on purpose with "server": {"antivirus": {"disabled": true}}`)
	}
	e.Log.Warn("antivirus: not configured: messages are not scanned for viruses, infected ones are accepted and delivered, and nothing is quarantined; set server.clamd in custode.json",
		"profile", cmp.Or(s.Profile, profileDevelopment), "disabled", disabled)
	return nil, nil
}

// AntivirusStatus is what the audit report says of the virus scanner the
// configuration gives the gestore: "clamd <address>", or "not configured".
func (c *Config) AntivirusStatus() string {
	if c.Server == nil || c.Server.Clamd == "" {
		if c.Server != nil && c.Server.Antivirus != nil && c.Server.Antivirus.Disabled {
			return "not configured (disabled in custode.json)"
		}
		return "not configured"
	}
	return "clamd " + c.Server.Clamd
}

// MailboxPolicy is one entry of the server section's "mailboxes".
type MailboxPolicy struct {
	NonPEC    string `json:"non_pec,omitempty"`    // anomalia, reject, folder or forward
	ForwardTo string `json:"forward_to,omitempty"` // for forward
	NotifyTo  string `json:"notify_to,omitempty"`  // notice of arrival
}

// DefaultServerConfig is what custode init writes: every point on
// 127.0.0.1, on ports above 1024.
func DefaultServerConfig() *ServerConfig {
	return &ServerConfig{
		Submission:  "127.0.0.1:5587",
		Submissions: "127.0.0.1:5465",
		Ricezione:   "127.0.0.1:2525",
		IMAP:        "127.0.0.1:5143",
		TLSCert:     filepath.Join("pki", "tls.pem"),
		TLSKey:      filepath.Join("pki", "tls.key"),
	}
}

// WriteTLSCertificate issues the development TLS certificate of the
// servers, from the development CA, if it is missing.
func (c *Config) WriteTLSCertificate(now time.Time) error {
	s := c.Server
	if s == nil || s.TLSCert == "" || s.TLSKey == "" {
		return nil
	}
	if _, err := os.Stat(c.Path(s.TLSCert)); err == nil {
		return nil
	}
	ca, err := pki.LoadKeyPair(c.Path(c.CACert), c.Path(filepath.Join(filepath.Dir(c.CACert), pki.CAKeyFile)))
	if err != nil {
		return fmt.Errorf("development TLS certificate: %w", err)
	}
	kp, err := pki.IssueTLSServer(ca, []string{"localhost", "127.0.0.1", c.Domain}, now.Add(-time.Hour), now.AddDate(3, 0, 0))
	if err != nil {
		return err
	}
	return kp.WriteFiles(c.Path(s.TLSCert), c.Path(s.TLSKey))
}

// Domains are the PEC domains whose mailboxes the gestore keeps.
func (c *Config) Domains() []string {
	if c.Server != nil && len(c.Server.Domains) > 0 {
		return c.Server.Domains
	}
	return []string{c.Domain}
}

// ServiceMailbox is our mailReceipt: where other gestori send ricevute di
// presa in carico and avvisi di rilevazione virus.
func (c *Config) ServiceMailbox() string { return "posta-certificata@" + c.Domain }

// OwnProvider is this gestore's record in the indice dei gestori.
func (c *Config) OwnProvider() (*igpec.Provider, error) {
	certs, err := pki.LoadCertificates(c.Path(c.GestoreCert))
	if err != nil {
		return nil, err
	}
	p := &igpec.Provider{Name: c.Gestore, MailReceipt: c.ServiceMailbox(), ManagedDomains: c.Domains()}
	p.AddCertificate(certs[0].Raw)
	return p, nil
}

// Index returns the indice dei gestori of the configuration.
func (c *Config) Index() (*igpec.Index, error) {
	if c.Server == nil || c.Server.Index == "" {
		p, err := c.OwnProvider()
		if err != nil {
			return nil, err
		}
		return igpec.NewIndex(p)
	}
	ix, err := cli.ReadIndex(context.Background(), nil, c.Path(c.Server.Index))
	if err != nil {
		return nil, fmt.Errorf("indice dei gestori: %w", err)
	}
	return ix, nil
}

// MailboxDir is the mailbox store's directory in the data directory.
// MailboxDir is the mailbox store's directory in the data directory.
func (c *Config) MailboxDir() string { return filepath.Join(c.Dir, "mailboxes") }

// QueueDir is the outbound queue's directory in the data directory.
// QueueDir is the outbound queue's directory in the data directory.
func (c *Config) QueueDir() string { return filepath.Join(c.Dir, "queue") }

// OpenMailboxes opens the mailbox store. With l, failed and throttled
// logins are recorded in it.
func (c *Config) OpenMailboxes(ctx context.Context, e *cli.Env, now func() time.Time, l *ledger.Ledger) (*mailstore.Store, error) {
	if live, err := c.Live(e); err != nil || live != nil {
		if err != nil {
			return nil, err
		}
		return live.Mailboxes, nil
	}
	iter := 0
	if c.Server != nil {
		iter = c.Server.PasswordIterations
	}
	opts := mailstore.Options{Dir: c.MailboxDir(), Logger: e.Log, Now: now, PasswordIterations: iter}
	if l != nil {
		opts.Ledger = l
	}
	return mailstore.Open(ctx, opts)
}

// Gestore is the running gestore of a data directory: its server and the
// stores it owns besides the ledger.
type Gestore struct {
	Server    *gestore.Server
	Mailboxes *mailstore.Store
	Queue     *queue.Queue
	Archivio  *sicurezza.Archive // nil without the archivio di sicurezza
	TLS       *tls.Config
}

// Close closes the stores the gestore owns (not the ledger).
// Close closes the stores the gestore owns (not the ledger).
func (g *Gestore) Close() error {
	err := errors.Join(g.Server.Close(), g.Queue.Close(), g.Mailboxes.Close())
	if g.Archivio != nil {
		err = errors.Join(err, g.Archivio.Close())
	}
	return err
}

// OpenGestore builds the gestore server of the configuration over l.
func (c *Config) OpenGestore(ctx context.Context, e *cli.Env, l *ledger.Ledger, now func() time.Time) (*Gestore, error) {
	if c.Server == nil {
		return nil, errors.New(`custode.json has no "server" section: the gestore is not configured`)
	}
	s := c.Server
	signer, err := smime.LoadKeyPair(c.Path(c.GestoreCert), c.Path(c.GestoreKey))
	if err != nil {
		return nil, err
	}
	g, err := pec.NewGestore(c.Gestore, c.Domain, signer, pec.RandomIDs(nil))
	if err != nil {
		return nil, err
	}
	ix, err := c.Index()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.Path(s.TLSCert), c.Path(s.TLSKey))
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, f := range append([]string{c.CACert}, s.PeerCAs...) {
		certs, err := pki.LoadCertificates(c.Path(f))
		if err != nil {
			return nil, fmt.Errorf("peer CA: %w", err)
		}
		for _, ca := range certs {
			roots.AddCert(ca)
		}
	}
	clientTLS := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	scanner, err := s.Scanner(e)
	if err != nil {
		return nil, err
	}
	policies := map[string]gestore.MailboxPolicy{}
	for mb, p := range s.Mailboxes {
		switch gestore.NonPECPolicy(p.NonPEC) {
		case "", gestore.NonPECAnomalia, gestore.NonPECReject, gestore.NonPECFolder:
		case gestore.NonPECForward:
			if p.ForwardTo == "" {
				return nil, fmt.Errorf("mailbox %s: non_pec forward needs forward_to", mb)
			}
		default:
			return nil, fmt.Errorf("mailbox %s: unknown non_pec %q (anomalia, reject, folder or forward)", mb, p.NonPEC)
		}
		policies[strings.ToLower(mb)] = gestore.MailboxPolicy{NonPEC: gestore.NonPECPolicy(p.NonPEC), ForwardTo: p.ForwardTo, NotifyTo: p.NotifyTo}
	}
	mb, err := c.OpenMailboxes(ctx, e, now, l)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(ctx, queue.Options{Dir: c.QueueDir(), Logger: e.Log, Now: now})
	if err != nil {
		mb.Close()
		return nil, err
	}
	archivioPolicies := s.Archivio
	var virusRetention policyFile.Period // zero: the legal 30 months
	// The applied policy file, read again whenever it changes (custode
	// policy apply while serving), replaces the configuration's mailbox
	// options; its archivio di sicurezza and retention are read here, at
	// the start.
	active := c.PolicyDir().Watch(e.Log.With("gestore", "policy"))
	policyFunc := func(mb string) gestore.MailboxPolicy {
		if pol := active(); pol != nil {
			o := pol.MailboxOptions(mb)
			return gestore.MailboxPolicy{NonPEC: gestore.NonPECPolicy(o.NonPEC), ForwardTo: o.ForwardTo, NotifyTo: o.NotifyTo}
		}
		return policies[mb]
	}
	if pol, err := policyFile.Load(c.ActivePolicy()); err == nil {
		// The applied policy file replaces the configuration's archivio
		// di sicurezza.
		archivioPolicies = ArchivioFromPolicy(pol, now())
		virusRetention = pol.Retention.VirusQuarantine
		e.Log.Info("policy applied", "version", pol.Version, "file", c.ActivePolicy())
	} else if !errors.Is(err, os.ErrNotExist) {
		q.Close()
		mb.Close()
		return nil, fmt.Errorf("the active policy: %w", err)
	}
	var quarantena gestore.Quarantine
	if scanner != nil {
		if quarantena, err = c.OpenQuarantine(ctx, virusRetention); err != nil {
			q.Close()
			mb.Close()
			return nil, err
		}
	}
	// The archivio di sicurezza is open even when no mailbox has one, so
	// that a policy applied while serving can turn it on (archivioHook).
	var archivio *sicurezza.Archive
	var hook gestore.Archiver
	{
		store, err := c.ArchiveStore(ctx)
		if err != nil {
			q.Close()
			mb.Close()
			return nil, err
		}
		reg, err := retention.OpenRegistry(c.HoldsFile())
		if err != nil {
			q.Close()
			mb.Close()
			return nil, err
		}
		if archivio, err = sicurezza.Open(ctx, sicurezza.Options{
			Store: store, Dir: filepath.Join(c.Dir, "sicurezza"), Policies: archivioPolicies, Now: now, Logger: e.Log, Holds: reg,
		}); err != nil {
			q.Close()
			mb.Close()
			return nil, err
		}
		hook = &archivioHook{archivio: archivio, active: active, now: now, log: e.Log, seen: active()}
	}
	srv, err := gestore.New(gestore.Options{
		Gestore:       g,
		Domains:       c.Domains(),
		Index:         ix,
		Ledger:        l,
		Mailboxes:     mb,
		Queue:         q,
		Scanner:       scanner,
		Quarantine:    quarantena,
		Archive:       hook,
		Routes:        s.Routes,
		TLS:           serverTLS,
		ClientTLS:     clientTLS,
		MaxSize:       s.MaxSize,
		MaxRecipients: s.MaxRecipients,
		NonPEC:        gestore.NonPECPolicy(s.NonPEC),
		Policy:        policyFunc,
		SpoolDir:      filepath.Join(c.Dir, "spool"),
		Now:           now,
		Logger:        e.Log,
	})
	if err != nil {
		q.Close()
		mb.Close()
		if archivio != nil {
			archivio.Close()
		}
		return nil, err
	}
	return &Gestore{Server: srv, Mailboxes: mb, Queue: q, Archivio: archivio, TLS: serverTLS}, nil
}

// OpenQuarantine opens the quarantine of infected messages in the
// archive store, locked for retention (zero: the legal 30 months).
func (c *Config) OpenQuarantine(ctx context.Context, retention policyFile.Period) (*quarantine.Store, error) {
	store, err := c.ArchiveStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return quarantine.New(quarantine.Options{Store: store, Retention: retention})
}

// archivioHook is the archivio di sicurezza as the gestore's archive
// hook, following the applied policy: when custode policy apply (or
// SIGHUP) makes another policy active, the mailboxes it archives take
// effect with the next message.
type archivioHook struct {
	archivio *sicurezza.Archive
	active   func() *policyFile.Policy
	now      func() time.Time
	log      *slog.Logger

	mu   sync.Mutex
	seen *policyFile.Policy // the policy the archive's mailboxes come from
}

// Archive archives m under the active policy.
func (h *archivioHook) Archive(ctx context.Context, m sicurezza.Message) (string, error) {
	h.mu.Lock()
	if pol := h.active(); pol != nil && pol != h.seen {
		if err := h.archivio.SetPolicies(ArchivioFromPolicy(pol, h.now())); err != nil {
			h.log.Error("archivio di sicurezza: the applied policy's mailboxes: keeping the ones before", "version", pol.Version, "err", err)
		} else {
			h.log.Info("archivio di sicurezza: mailboxes from the applied policy", "version", pol.Version)
		}
		h.seen = pol
	}
	h.mu.Unlock()
	return h.archivio.Archive(ctx, m)
}
