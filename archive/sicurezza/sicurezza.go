// Package sicurezza is the archivio di sicurezza: for the titolari whose
// contract includes it, every busta, ricevuta and avviso the gestore signs
// or receives about their mailbox is kept byte-identical in WORM storage,
// content-addressed by its SHA-256, for ten years or until the contract
// ends, within a quota.
//
// Archive returns the object's key at once, durably: the message is first
// written to a local spool (pec/queue, fsynced), then uploaded in the
// background, so an archive that is down delays the upload, never the
// mail, and loses nothing. The key goes in the ledger entry of the event;
// the quota used by each mailbox is kept with the spool and survives
// restarts.
package sicurezza

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/queue"
)

// DefaultRetention is how long a message is kept when the contract sets no
// end: ten years.
const DefaultRetention = 10 * 365 * 24 * time.Hour

// DefaultPrefix is where the archivio di sicurezza keeps its objects.
const DefaultPrefix = "sicurezza/"

// Policy is the archivio di sicurezza of one mailbox, or of a whole domain
// (Mailbox "@domain").
type Policy struct {
	// Mailbox is the titolare's address, or "@" and a domain.
	Mailbox string `json:"mailbox"`
	// Quota bounds the bytes archived for the mailbox; 0 means none.
	Quota int64 `json:"quota,omitempty"`
	// ContractEnd, if set, is when the contract ends: objects are kept
	// until then instead of for Retention.
	ContractEnd time.Time `json:"contract_end,omitzero"`
	// Retention is how long objects are kept when there is no
	// ContractEnd; zero means DefaultRetention. Tests shorten it;
	// configuration files cannot.
	Retention time.Duration `json:"-"`
}

// Options configures an Archive.
type Options struct {
	// Store is the WORM store. Required.
	Store archive.Store
	// Prefix is the key prefix of the objects; empty means DefaultPrefix.
	Prefix string
	// Dir is the local spool directory. Required.
	Dir string
	// Policies are the mailboxes and domains whose messages are archived.
	Policies []Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Holds, if not nil, tells which legal holds cover a message: it is
	// stored under a legal hold if any does, so that a hold placed on a
	// mailbox also covers what is archived after it (retention.Registry).
	Holds interface {
		Covering(mailboxes []string, identificativo string, t time.Time) ([]string, error)
	}
	// MinBackoff and MaxBackoff bound the retries of uploads while the
	// store is down; zero means 5 seconds and 5 minutes.
	MinBackoff, MaxBackoff time.Duration
}

// Message is a signed message the gestore produced or received, handed to
// Archive. The gestore's archive hook (gestore.Archiver) takes it.
type Message struct {
	// Mailbox is the titolare whose archivio di sicurezza may keep it.
	Mailbox string
	// Kind is the type of message.
	Kind pec.Kind
	// Identificativo is the transaction's identificativo.
	Identificativo string
	// Message is the signed message, exactly as sent or received.
	Message []byte
	// Time is the riferimento temporale of the event.
	Time time.Time
}

// Archive is the archivio di sicurezza. It is the gestore's archive hook
// (gestore.Archiver).
type Archive struct {
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	spool *queue.Queue

	pmu      sync.RWMutex
	policies map[string]Policy // by lower-cased mailbox or "@domain"

	mu   sync.Mutex
	used map[string]int64 // bytes archived per mailbox
}

// ErrOverQuota is wrapped by the error of Archive for a mailbox whose
// archivio di sicurezza is full.
var ErrOverQuota = errors.New("archivio di sicurezza: quota exceeded")

// Open opens the spool and the quota accounting.
func Open(ctx context.Context, opts Options) (*Archive, error) {
	if opts.Store == nil || opts.Dir == "" {
		return nil, errors.New("sicurezza: Store and Dir are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := archive.ValidatePrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("sicurezza: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	policies, err := policyMap(opts.Policies)
	if err != nil {
		return nil, err
	}
	a := &Archive{opts: opts, log: opts.Logger, now: opts.Now, policies: policies, used: map[string]int64{}}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sicurezza: %w", err)
	}
	if err := a.loadUsed(); err != nil {
		return nil, err
	}
	q, err := queue.Open(ctx, queue.Options{
		Dir: filepath.Join(opts.Dir, "spool"), Now: opts.Now, Logger: opts.Logger,
		MinBackoff: opts.MinBackoff, MaxBackoff: opts.MaxBackoff, Workers: 4,
	})
	if err != nil {
		return nil, fmt.Errorf("sicurezza: spool: %w", err)
	}
	a.spool = q
	return a, nil
}

// Close closes the spool. Uploads not yet made stay spooled for the next
// Open.
func (a *Archive) Close() error { return a.spool.Close() }

// policyMap checks ps and indexes them by lower-cased mailbox or
// "@domain".
func policyMap(ps []Policy) (map[string]Policy, error) {
	m := make(map[string]Policy, len(ps))
	for _, p := range ps {
		key := strings.ToLower(p.Mailbox)
		if key == "" || !strings.Contains(key, "@") {
			return nil, fmt.Errorf("sicurezza: policy for %q: want a mailbox address or @domain", p.Mailbox)
		}
		if p.Quota < 0 || p.Retention < 0 {
			return nil, fmt.Errorf("sicurezza: policy for %s: negative quota or retention", p.Mailbox)
		}
		m[key] = p
	}
	return m, nil
}

// SetPolicies replaces the mailboxes and domains whose messages are
// archived (a policy applied while the gestore serves): messages archived
// from now on follow ps; objects already archived keep their retention.
// Invalid policies are refused and the current ones kept.
func (a *Archive) SetPolicies(ps []Policy) error {
	m, err := policyMap(ps)
	if err != nil {
		return err
	}
	a.pmu.Lock()
	a.policies = m
	a.pmu.Unlock()
	return nil
}

// policy returns the policy that covers mailbox.
func (a *Archive) policy(mailbox string) (Policy, bool) {
	mailbox = strings.ToLower(mailbox)
	a.pmu.RLock()
	defer a.pmu.RUnlock()
	if p, ok := a.policies[mailbox]; ok {
		return p, true
	}
	if i := strings.LastIndexByte(mailbox, '@'); i >= 0 {
		p, ok := a.policies[mailbox[i:]]
		return p, ok
	}
	return Policy{}, false
}

// retainUntil is when an object archived now for p may be deleted.
func (a *Archive) retainUntil(p Policy) time.Time {
	if !p.ContractEnd.IsZero() && p.ContractEnd.After(a.now()) {
		return p.ContractEnd
	}
	r := p.Retention
	if r == 0 {
		r = DefaultRetention
	}
	return a.now().Add(r)
}

// Archive spools m for the archivio di sicurezza of m.Mailbox, if its
// policy asks for it, and returns the key the object will have. It
// returns "" for a mailbox without the archivio di sicurezza, and an error
// wrapping ErrOverQuota when the message does not fit in the quota.
func (a *Archive) Archive(ctx context.Context, m Message) (string, error) {
	p, ok := a.policy(m.Mailbox)
	if !ok {
		return "", nil
	}
	mailbox := strings.ToLower(m.Mailbox)
	key := archive.ContentKey(a.opts.Prefix, m.Message)
	a.mu.Lock()
	defer a.mu.Unlock()
	size := int64(len(m.Message))
	if p.Quota > 0 && a.used[mailbox]+size > p.Quota {
		return "", fmt.Errorf("sicurezza: %s: %d bytes used of %d: %w", mailbox, a.used[mailbox], p.Quota, ErrOverQuota)
	}
	until := a.retainUntil(p)
	ref, err := json.Marshal(spooled{Key: key, RetainUntil: until.UTC(), Identificativo: m.Identificativo, Time: m.Time.UTC()})
	if err != nil {
		return "", err
	}
	it := queue.Item{
		ID:          "put/" + key[len(key)-64:] + "/" + fmt.Sprint(until.Unix()),
		Destination: "archive",
		Ref:         string(ref),
		To:          []string{mailbox},
		Message:     m.Message,
	}
	err = a.spool.Enqueue(ctx, it)
	if errors.Is(err, queue.ErrExists) {
		return key, nil // the same bytes, spooled and counted already
	}
	if err != nil {
		return "", fmt.Errorf("sicurezza: spool %s: %w", key, err)
	}
	a.used[mailbox] += size
	if err := a.saveUsed(); err != nil {
		return "", err
	}
	return key, nil
}

// Run uploads the spool to the store until ctx is done, retrying with
// backoff while the store is down.
func (a *Archive) Run(ctx context.Context) error {
	return a.spool.Run(ctx, a.upload)
}

// Backlog is the number of messages spooled but not yet in the store.
func (a *Archive) Backlog() int { return a.spool.Len() }

// Used returns the bytes archived for mailbox.
func (a *Archive) Used(mailbox string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used[strings.ToLower(mailbox)]
}

// spooled is what the spool keeps beside a message: its Ref.
type spooled struct {
	Key            string    `json:"key"`
	RetainUntil    time.Time `json:"retain_until"`
	Identificativo string    `json:"identificativo,omitempty"`
	Time           time.Time `json:"time,omitzero"`
}

func (a *Archive) upload(ctx context.Context, it queue.Item) error {
	var sp spooled
	if err := json.Unmarshal([]byte(it.Ref), &sp); err != nil || sp.Key != archive.ContentKey(a.opts.Prefix, it.Message) {
		return &queue.PermanentError{Err: fmt.Errorf("sicurezza: spooled item %s does not match its key", it.ID)}
	}
	hold := false
	if a.opts.Holds != nil {
		cases, err := a.opts.Holds.Covering(it.To, sp.Identificativo, sp.Time)
		if err != nil {
			return fmt.Errorf("sicurezza: legal holds: %w", err)
		}
		hold = len(cases) > 0
	}
	info, err := archive.PutContent(ctx, a.opts.Store, a.opts.Prefix, it.Message, archive.PutOptions{
		Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: sp.RetainUntil},
		LegalHold: hold,
	})
	if err != nil {
		return fmt.Errorf("sicurezza: put %s: %w", sp.Key, err)
	}
	// The same bytes archived earlier: extend a shorter retention, and
	// put the hold on.
	if info.Retention.RetainUntil.Before(sp.RetainUntil) {
		if err := a.opts.Store.ExtendRetention(ctx, sp.Key, info.VersionID, sp.RetainUntil); err != nil {
			return fmt.Errorf("sicurezza: extend %s: %w", sp.Key, err)
		}
	}
	if hold && !info.LegalHold {
		if err := a.opts.Store.SetLegalHold(ctx, sp.Key, info.VersionID, true); err != nil {
			return fmt.Errorf("sicurezza: hold %s: %w", sp.Key, err)
		}
	}
	return nil
}

// usedFile keeps the quota accounting.
func (a *Archive) usedFile() string { return filepath.Join(a.opts.Dir, "used.json") }

func (a *Archive) loadUsed() error {
	b, err := os.ReadFile(a.usedFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sicurezza: quota accounting: %w", err)
	}
	if err := json.Unmarshal(b, &a.used); err != nil {
		return fmt.Errorf("sicurezza: quota accounting %s: %w", a.usedFile(), err)
	}
	return nil
}

// saveUsed writes the quota accounting durably: temporary file, fsync,
// rename, fsync of the directory.
func (a *Archive) saveUsed() error {
	b, err := json.Marshal(a.used)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(a.usedFile(), b, 0o600); err != nil {
		return fmt.Errorf("sicurezza: quota accounting: %w", err)
	}
	return nil
}
