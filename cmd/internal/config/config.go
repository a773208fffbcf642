// Package config is a custode data directory's configuration (custode.json):
// loading and checking it, creating a data directory (custode init), and
// opening the ledger, archive, mailboxes, quarantine and gestore it describes.
package config

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/s3store"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/retention"
	"github.com/custode/custode/tsa"
)

const (
	File = "custode.json"

	// The listeners custode init writes: every one on 127.0.0.1, on ports
	// above 1024 (the SMTP and IMAP points are in DefaultServerConfig).
	defaultAPIListen     = "127.0.0.1:8443"
	DefaultTSAListen     = "127.0.0.1:8318" // also -tsa-listen's default
	defaultMetricsListen = "127.0.0.1:9464"
	DefaultAdminSocket   = "admin.sock" // in the data directory
)

func addrOf[T any](v T) *T { return &v }

// MetricsConfig is the "metrics" section of custode.json.
type MetricsConfig struct {
	// Listen is host:port of /metrics, /healthz and /readyz (plain HTTP:
	// keep it on a private address); "" means not served.
	Listen string `json:"listen"`
}

// TSAListenAddr returns where serve's built-in TSA listens: the
// -tsa-listen flag if given on the command line (flagValue), else
// tsa_listen, else the default.
func (c *Config) TSAListenAddr(fs *flag.FlagSet, flagValue string) string {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "tsa-listen" {
			given = true
		}
	})
	if given || c.TSAListen == nil {
		return flagValue
	}
	return *c.TSAListen
}

// MetricsListen is where the metrics endpoints listen; "" means nowhere.
func (c *Config) MetricsListen() string {
	if c.Metrics == nil {
		return ""
	}
	return c.Metrics.Listen
}

// devTSAPolicy is the policy OID of the built-in TSA's tokens: a private
// arc, naming no real policy.
var devTSAPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}

// Config is the data directory's custode.json. Paths are relative to the
// data directory unless absolute.
type Config struct {
	Gestore string `json:"gestore"` // the gestore's name
	Domain  string `json:"domain"`  // its PEC domain
	Origin  string `json:"origin"`  // first line of every checkpoint
	// CodGestPEC is the gestore's code in AgID's statistics (dataset P01's
	// CodGestPEC). custode init writes it empty: the audit refuses to
	// write P01 until it is set (or given with -cod-gest-pec).
	CodGestPEC string `json:"cod_gest_pec"`

	// Keys and certificates (PEM). Production points these at real ones.
	CACert      string `json:"ca_cert"` // trust anchors of our signatures and tokens
	GestoreCert string `json:"gestore_cert"`
	GestoreKey  string `json:"gestore_key"`
	TSACert     string `json:"tsa_cert,omitempty"`
	TSAKey      string `json:"tsa_key,omitempty"`

	// TSAURL, if set, is a real RFC 3161 TSA; otherwise the built-in one
	// signs tokens in process.
	TSAURL string `json:"tsa_url,omitempty"`
	// TSARoots holds the TSA's trust anchors when they differ from CACert.
	TSARoots string `json:"tsa_roots,omitempty"`

	// Archive is where sealed segments go; nil means a local WORM
	// directory, worm/, in the data directory.
	Archive *ArchiveConfig `json:"archive,omitempty"`

	// Server configures the gestore's SMTP and IMAP points; nil means
	// the defaults of custode init.
	Server *ServerConfig `json:"server,omitempty"`

	// API configures the HTTP API of queries and exports; nil means
	// https://127.0.0.1:8443 with the token file api-tokens.
	API *APIConfig `json:"api,omitempty"`

	// TSAListen is host:port of the built-in TSA's HTTP endpoint (used
	// only without tsa_url); "" means not served, absent means
	// 127.0.0.1:8318. serve's -tsa-listen, when given, wins.
	TSAListen *string `json:"tsa_listen,omitempty"`

	// Metrics configures the Prometheus metrics and health endpoints;
	// absent means not served (custode init writes 127.0.0.1:9464).
	Metrics *MetricsConfig `json:"metrics,omitempty"`

	// AdminSocket is the path of the running server's administration
	// socket (a unix socket, mode 0600); custode init writes admin.sock.
	AdminSocket string `json:"admin_socket,omitempty"`

	CheckpointEvery    uint64 `json:"checkpoint_every,omitempty"`
	CheckpointInterval string `json:"checkpoint_interval,omitempty"` // e.g. "10s"

	Dir string `json:"-"` // the data directory: not in the file
}

// Path returns p relative to the data directory, unless p is absolute or
// empty.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// LedgerDir is the ledger's directory in the data directory.
func (c *Config) LedgerDir() string { return filepath.Join(c.Dir, "ledger") }

// Load reads dir/custode.json and checks that the fields every command
// needs are set.
func Load(dir string) (*Config, error) {
	b, err := cli.ReadInput(context.Background(), nil, filepath.Join(dir, File), cli.InputConfig)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a custode data directory (no %s): run custode init -data %s", dir, File, dir)
	}
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	c.Dir = dir
	if c.Gestore == "" || c.Domain == "" || c.Origin == "" || c.CACert == "" || c.GestoreCert == "" || c.GestoreKey == "" {
		return nil, fmt.Errorf("%s: gestore, domain, origin, ca_cert, gestore_cert and gestore_key are required", filepath.Join(dir, File))
	}
	if c.TSAURL == "" && (c.TSACert == "" || c.TSAKey == "") {
		return nil, fmt.Errorf("%s: either tsa_url or tsa_cert and tsa_key are required", filepath.Join(dir, File))
	}
	return &c, nil
}

// Init creates a data directory with a development PKI. It refuses
// to touch a directory that already has a configuration.
func Init(dir, gestore, domain string, now time.Time) (*Config, error) {
	if _, err := os.Stat(filepath.Join(dir, File)); err == nil {
		return nil, fmt.Errorf("%s already holds a configuration", dir)
	}
	set, err := pki.NewDevSet(gestore, domain, now)
	if err != nil {
		return nil, err
	}
	if err := set.WriteDir(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	c := &Config{
		Gestore:     gestore,
		Domain:      domain,
		Origin:      domain + "/custode",
		CACert:      filepath.Join("pki", pki.CACertFile),
		GestoreCert: filepath.Join("pki", pki.GestoreCertFile),
		GestoreKey:  filepath.Join("pki", pki.GestoreKeyFile),
		TSACert:     filepath.Join("pki", pki.TSACertFile),
		TSAKey:      filepath.Join("pki", pki.TSAKeyFile),
		Server:      DefaultServerConfig(),
		API:         &APIConfig{Listen: defaultAPIListen, Tokens: "api-tokens"},
		TSAListen:   addrOf(DefaultTSAListen),
		Metrics:     &MetricsConfig{Listen: defaultMetricsListen},
		AdminSocket: DefaultAdminSocket,
		Dir:         dir,
	}
	if err := c.WriteTLSCertificate(now); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := durable.WriteFile(filepath.Join(dir, File), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// Trust returns the trust anchors of the gestore's signatures and of the
// TSA's tokens.
func (c *Config) Trust() (gestore, tsaRoots *x509.CertPool, err error) {
	if gestore, err = pki.LoadPool(c.Path(c.CACert)); err != nil {
		return nil, nil, err
	}
	tsaRoots = gestore
	if c.TSARoots != "" {
		if tsaRoots, err = pki.LoadPool(c.Path(c.TSARoots)); err != nil {
			return nil, nil, err
		}
	}
	return gestore, tsaRoots, nil
}

// TrustedArchive returns the archive and the trust anchors its sealed
// segments are checked against: what every command reading the archive
// needs.
func (c *Config) TrustedArchive(ctx context.Context) (store archive.Store, roots, tsaRoots *x509.CertPool, err error) {
	if roots, tsaRoots, err = c.Trust(); err != nil {
		return nil, nil, nil, err
	}
	if store, err = c.ArchiveStore(ctx); err != nil {
		return nil, nil, nil, err
	}
	return store, roots, tsaRoots, nil
}

// Authority returns the built-in TSA of the configuration.
func (c *Config) Authority() (*tsa.Authority, error) {
	kp, err := pki.LoadKeyPair(c.Path(c.TSACert), c.Path(c.TSAKey))
	if err != nil {
		return nil, err
	}
	return tsa.NewAuthority(tsa.AuthorityConfig{
		Certificate: kp.Certificate, Signer: kp.Key, Chain: kp.Chain, Policy: devTSAPolicy,
	})
}

// Stamper returns the configured TSA: a client for a real one, or the
// built-in authority in process.
func (c *Config) Stamper() (tsa.Stamper, error) {
	if c.TSAURL != "" {
		_, roots, err := c.Trust()
		if err != nil {
			return nil, err
		}
		return &tsa.Client{URL: c.TSAURL, Roots: roots}, nil
	}
	return c.Authority()
}

// OpenLedger opens the ledger with checkpoints signed by the gestore and
// timestamped by the configured TSA.
func (c *Config) OpenLedger(ctx context.Context, e *cli.Env) (*ledger.Ledger, error) {
	if live, err := c.Live(e); err != nil || live != nil {
		return liveLedger(live, err)
	}
	kp, err := pki.LoadKeyPair(c.Path(c.GestoreCert), c.Path(c.GestoreKey))
	if err != nil {
		return nil, err
	}
	st, err := c.Stamper()
	if err != nil {
		return nil, err
	}
	var interval time.Duration
	if c.CheckpointInterval != "" {
		if interval, err = time.ParseDuration(c.CheckpointInterval); err != nil {
			return nil, fmt.Errorf("checkpoint_interval: %w", err)
		}
	}
	return ledger.Open(ctx, ledger.Options{
		Dir:    c.LedgerDir(),
		Logger: e.Log,
		// Events dated well before the newest timestamp are refused
		// unless imported: a verifier would find their first timestamp
		// too late (BUNDLE.md's delay bound).
		MaxEventDelay: ledger.DefaultMaxEventDelay(interval),
		Checkpoints: &ledger.CheckpointOptions{
			Origin:   c.Origin,
			Every:    c.CheckpointEvery,
			Interval: interval,
			Signer:   &ledger.CMSSigner{Certificate: kp.Certificate, Key: kp.Key, Chain: kp.Chain},
			Stamper:  st,
		},
	})
}

// OpenLedgerReadOnly opens the ledger for reading and verification.
// Inside a running server it is the server's ledger, which the command
// only reads.
func (c *Config) OpenLedgerReadOnly(ctx context.Context, e *cli.Env) (*ledger.Ledger, error) {
	if live, err := c.Live(e); err != nil || live != nil {
		return liveLedger(live, err)
	}
	if _, err := os.Stat(c.LedgerDir()); err != nil {
		return nil, fmt.Errorf("no ledger in %s: %w", c.Dir, err)
	}
	return ledger.Open(ctx, ledger.Options{Dir: c.LedgerDir(), ReadOnly: true, Logger: e.Log})
}

// ArchiveConfig selects the WORM store of sealed segments: S3 when
// s3_endpoint is set, else a local directory.
type ArchiveConfig struct {
	Dir        string `json:"dir,omitempty"` // local WORM directory; default "worm"
	S3Endpoint string `json:"s3_endpoint,omitempty"`
	S3Bucket   string `json:"s3_bucket,omitempty"`
	S3Region   string `json:"s3_region,omitempty"`
	// The S3 credentials are read from the environment variables these
	// name (default CUSTODE_S3_ACCESS_KEY and CUSTODE_S3_SECRET_KEY), never
	// from the file.
	S3AccessKeyEnv string `json:"s3_access_key_env,omitempty"`
	S3SecretKeyEnv string `json:"s3_secret_key_env,omitempty"`
}

// ArchiveStore opens the configured WORM store, creating the bucket (with
// Object Lock) or directory if needed.
func (c *Config) ArchiveStore(ctx context.Context) (archive.Store, error) {
	a := c.Archive
	if a == nil {
		a = &ArchiveConfig{}
	}
	if a.S3Endpoint == "" {
		dir := a.Dir
		if dir == "" {
			dir = "worm"
		}
		return localstore.Open(c.Path(dir), localstore.Options{})
	}
	keyEnv, secretEnv := cmp.Or(a.S3AccessKeyEnv, "CUSTODE_S3_ACCESS_KEY"), cmp.Or(a.S3SecretKeyEnv, "CUSTODE_S3_SECRET_KEY")
	if os.Getenv(keyEnv) == "" || os.Getenv(secretEnv) == "" {
		return nil, fmt.Errorf("archive: s3_endpoint is set but %s or %s is empty", keyEnv, secretEnv)
	}
	s, err := s3store.New(s3store.Config{
		Endpoint: a.S3Endpoint, Bucket: a.S3Bucket, Region: a.S3Region,
		AccessKey: os.Getenv(keyEnv), SecretKey: os.Getenv(secretEnv),
	})
	if err != nil {
		return nil, err
	}
	if err := s.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// CountMailboxes returns how many mailboxes the gestore keeps (P01's
// NumCaselle), or why it cannot tell: never a silent 0.
func (c *Config) CountMailboxes(ctx context.Context, e *cli.Env) (int, error) {
	st, err := c.OpenMailboxes(ctx, e, time.Now, nil)
	if err != nil {
		return 0, fmt.Errorf("the mailbox store: %w", err)
	}
	defer cli.CloseMailboxes(e, st)
	list, err := st.Mailboxes(ctx)
	if err != nil {
		return 0, fmt.Errorf("the mailbox store: %w", err)
	}
	return len(list), nil
}

// APIConfig is the "api" section of custode.json: the HTTP API of queries
// and exports.
type APIConfig struct {
	// Listen is host:port; empty means the API is not served.
	Listen string `json:"listen,omitempty"`
	// Tokens is the file of bearer tokens (lines "user sha256hex"), kept
	// by custode api token.
	Tokens string `json:"tokens,omitempty"`
	// ClientCA, if set, is a PEM file of the CAs whose client certificates
	// authenticate operators, auditors and legal users (mTLS). Use a CA
	// that issues client certificates only.
	ClientCA string `json:"client_ca,omitempty"`
}

// EffectiveAPI returns the API section, with its defaults: 127.0.0.1:8443 and the
// token file api-tokens in the data directory.
func (c *Config) EffectiveAPI() APIConfig {
	a := APIConfig{Listen: "127.0.0.1:8443", Tokens: "api-tokens"}
	if c.API != nil {
		a = *c.API
		if a.Tokens == "" {
			a.Tokens = "api-tokens"
		}
	}
	return a
}

// ExportIdentity is what signs an export and the anchors it carries.
type ExportIdentity struct {
	Signer        *smime.Signer
	Stamper       tsa.Stamper // time-stamps the export's signatures (CAdES-T)
	CAPEM, TSAPEM []byte
}

// ExportIdentity loads the gestore's signing key and the trust anchors of
// its signatures and of its TSA's tokens.
func (c *Config) ExportIdentity() (*ExportIdentity, error) {
	signer, err := smime.LoadKeyPair(c.Path(c.GestoreCert), c.Path(c.GestoreKey))
	if err != nil {
		return nil, err
	}
	caPEM, err := cli.ReadInput(context.Background(), nil, c.Path(c.CACert), cli.InputCertificates)
	if err != nil {
		return nil, err
	}
	tsaPEM := caPEM
	if c.TSARoots != "" {
		if tsaPEM, err = cli.ReadInput(context.Background(), nil, c.Path(c.TSARoots), cli.InputRoots); err != nil {
			return nil, err
		}
	}
	st, err := c.Stamper()
	if err != nil {
		return nil, err
	}
	return &ExportIdentity{Signer: signer, Stamper: st, CAPEM: caPEM, TSAPEM: tsaPEM}, nil
}

// HoldsFile is the file of legal holds in the data directory.
func (c *Config) HoldsFile() string { return filepath.Join(c.Dir, "holds.json") }

// Save writes the configuration back to custode.json, atomically.
func (c *Config) Save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(c.Dir, File), append(b, '\n'), 0o644)
}

// PolicyDir is the data directory's directory of applied policies.
func (c *Config) PolicyDir() retention.PolicyDir {
	return retention.PolicyDir(filepath.Join(c.Dir, "policies"))
}

// ActivePolicy is where the applied policy is kept.
func (c *Config) ActivePolicy() string { return c.PolicyDir().ActivePath() }

// Recorder records the archive's own events in l, for this gestore.
func (c *Config) Recorder(l *ledger.Ledger) *record.Recorder { return record.New(l, c.Gestore, nil) }
