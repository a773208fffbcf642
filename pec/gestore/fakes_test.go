package gestore

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/queue"
	"github.com/custode/custode/pec/smime"
)

// The concrete stores satisfy the gestore's ports.
var (
	_ Ledger    = (*ledger.Ledger)(nil)
	_ Outbox    = (*queue.Queue)(nil)
	_ Mailboxes = (*mailstore.Store)(nil)
	_ Archiver  = (*sicurezza.Archive)(nil)
)

// opLog is the order in which an engine under test called its ports, one
// line per call: "append <kinds>", "enqueue <ids>", "remove <id>",
// "deliver <address>".
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) add(format string, args ...any) {
	l.mu.Lock()
	l.ops = append(l.ops, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *opLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ops...)
}

// memLedger is a Ledger in memory: the entries of a trackLog (Find and
// EntriesFrom as the tracker tests use them) behind a mutex, and an
// Append that can be made to fail.
type memLedger struct {
	ops *opLog

	mu         sync.Mutex
	log        trackLog
	failAppend error // every Append fails with it while set
	// entered, if not nil, gets a value when an Append starts, which
	// then waits for a value on proceed: a commit held under way.
	entered, proceed chan struct{}
}

func (l *memLedger) Append(_ context.Context, events ...ledger.Event) ([]uint64, error) {
	kinds := make([]string, len(events))
	for i, ev := range events {
		kinds[i] = string(ev.Kind)
	}
	if l.entered != nil {
		l.entered <- struct{}{}
		<-l.proceed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failAppend != nil {
		l.ops.add("append-failed %s", strings.Join(kinds, " "))
		return nil, l.failAppend
	}
	seqs := make([]uint64, len(events))
	for i, ev := range events {
		e := &ledger.Entry{Seq: uint64(len(l.log.entries)), Event: ev}
		l.log.entries = append(l.log.entries, e)
		seqs[i] = e.Seq
	}
	l.ops.add("append %s", strings.Join(kinds, " "))
	return seqs, nil
}

func (l *memLedger) Head() ledger.Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.Head()
}

func (l *memLedger) Find(ctx context.Context, q ledger.Query) (*ledger.Page, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.Find(ctx, q)
}

func (l *memLedger) EntriesFrom(ctx context.Context, seq uint64) iter.Seq2[*ledger.Entry, error] {
	l.mu.Lock()
	snapshot := trackLog{entries: append([]*ledger.Entry(nil), l.log.entries...)}
	l.mu.Unlock()
	return snapshot.EntriesFrom(ctx, seq)
}

// kinds returns the kinds of the entries, in order.
func (l *memLedger) kinds() []ledger.Kind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledger.Kind
	for _, e := range l.log.entries {
		out = append(out, e.Kind)
	}
	return out
}

// entries returns the entries of kind k.
func (l *memLedger) entries(k ledger.Kind) []*ledger.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*ledger.Entry
	for _, e := range l.log.entries {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// memOutbox is an Outbox in memory, with the contract of queue.Queue
// that the gestore relies on: Enqueue all or none, ErrExists for an ID
// already queued, ErrNotFound for one that is not.
type memOutbox struct {
	ops *opLog

	mu    sync.Mutex
	items []queue.Item // in the order queued
	kick  chan struct{}
}

func (q *memOutbox) Enqueue(_ context.Context, items ...queue.Item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	seen := map[string]bool{}
	for _, it := range q.items {
		seen[it.ID] = true
	}
	ids := make([]string, len(items))
	for i, it := range items {
		if seen[it.ID] {
			return fmt.Errorf("memOutbox: enqueue %s: %w", it.ID, queue.ErrExists)
		}
		if it.Destination == "" || len(it.To) == 0 || len(it.Message) == 0 {
			return fmt.Errorf("memOutbox: enqueue %s: incomplete item", it.ID)
		}
		seen[it.ID] = true
		ids[i] = it.ID
	}
	for _, it := range items {
		it.Enqueued = trackStart
		q.items = append(q.items, it)
	}
	q.ops.add("enqueue %s", strings.Join(ids, " "))
	if q.kick != nil {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (q *memOutbox) Remove(_ context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, it := range q.items {
		if it.ID == id {
			q.items = append(q.items[:i], q.items[i+1:]...)
			q.ops.add("remove %s", id)
			return nil
		}
	}
	return fmt.Errorf("memOutbox: remove %s: %w", id, queue.ErrNotFound)
}

// Run delivers the items of the local destination (ours, handed to the
// punto di ricezione in process) as queue.Queue does, until ctx is done:
// nil or a PermanentError removes an item, another error leaves it. Items
// for other gestori stay queued: the fakes have no network.
func (q *memOutbox) Run(ctx context.Context, deliver func(ctx context.Context, it queue.Item) error) error {
	for {
		if _, err := q.drain(ctx, deliver); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.kick:
		}
	}
}

// drain delivers the local items until none is left, or one fails
// temporarily, and returns how many it handed to deliver.
func (q *memOutbox) drain(ctx context.Context, deliver func(ctx context.Context, it queue.Item) error) (int, error) {
	n := 0
	for {
		it, ok := q.nextLocal()
		if !ok {
			return n, nil
		}
		n++
		err := deliver(ctx, it)
		var pe *queue.PermanentError
		if err != nil && !errors.As(err, &pe) {
			return n, fmt.Errorf("memOutbox: deliver %s: %w", it.ID, err)
		}
		if err := q.Remove(ctx, it.ID); err != nil {
			return n, err
		}
	}
}

func (q *memOutbox) nextLocal() (queue.Item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if it.Destination == localDestination {
			return it, true
		}
	}
	return queue.Item{}, false
}

// ids returns the IDs of the queued items, in order.
func (q *memOutbox) ids() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, it := range q.items {
		out = append(out, it.ID)
	}
	return out
}

// memMailbox is one mailbox of a memMailboxes.
type memMailbox struct {
	password string
	quota    int64
	used     int64
	folders  map[string][][]byte
	keys     map[string]mailstore.Delivered
}

// memMailboxes is a Mailboxes in memory, with the contract of
// mailstore.Store that the gestore relies on: a Delivery's Key makes it
// idempotent, a quota refuses with ErrOverQuota, an unknown address with
// ErrNoSuchMailbox, an unknown folder with ErrNoSuchFolder.
type memMailboxes struct {
	ops *opLog

	mu    sync.Mutex
	boxes map[string]*memMailbox
}

func (m *memMailboxes) add(address, password string, quota int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.boxes == nil {
		m.boxes = map[string]*memMailbox{}
	}
	m.boxes[strings.ToLower(address)] = &memMailbox{password: password, quota: quota,
		folders: map[string][][]byte{"INBOX": nil}, keys: map[string]mailstore.Delivered{}}
}

func (m *memMailboxes) box(address string) (*memMailbox, error) {
	b := m.boxes[strings.ToLower(address)]
	if b == nil {
		return nil, fmt.Errorf("memMailboxes: %s: %w", address, mailstore.ErrNoSuchMailbox)
	}
	return b, nil
}

func (m *memMailboxes) Login(_ context.Context, a mailstore.LoginAttempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.box(a.Address)
	if err != nil || b.password != a.Password {
		return fmt.Errorf("memMailboxes: login %s: %w", a.Address, mailstore.ErrAuthFailed)
	}
	return nil
}

func (m *memMailboxes) Mailbox(_ context.Context, address string) (mailstore.MailboxInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.box(address)
	if err != nil {
		return mailstore.MailboxInfo{}, err
	}
	return mailstore.MailboxInfo{Address: strings.ToLower(address), Quota: b.quota, Used: b.used}, nil
}

func (m *memMailboxes) Deliver(_ context.Context, d mailstore.Delivery) (mailstore.Delivered, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.box(d.Address)
	if err != nil {
		return mailstore.Delivered{}, err
	}
	if len(d.Message) == 0 {
		return mailstore.Delivered{}, fmt.Errorf("memMailboxes: deliver: empty message: %w", mailstore.ErrInvalid)
	}
	if r, ok := b.keys[d.Key]; ok && d.Key != "" {
		r.Duplicate = true
		return r, nil
	}
	folder := d.Folder
	if folder == "" {
		folder = "INBOX"
	}
	msgs, ok := b.folders[folder]
	if !ok {
		return mailstore.Delivered{}, fmt.Errorf("memMailboxes: deliver to %s: %w", folder, mailstore.ErrNoSuchFolder)
	}
	if b.quota > 0 && b.used+int64(len(d.Message)) > b.quota {
		return mailstore.Delivered{}, fmt.Errorf("memMailboxes: deliver to %s: %w", d.Address, mailstore.ErrOverQuota)
	}
	b.folders[folder] = append(msgs, d.Message)
	b.used += int64(len(d.Message))
	r := mailstore.Delivered{UID: uint32(len(b.folders[folder])), UIDValidity: 1}
	if d.Key != "" {
		b.keys[d.Key] = r
	}
	m.ops.add("deliver %s", strings.ToLower(d.Address))
	return r, nil
}

func (m *memMailboxes) CreateFolder(_ context.Context, address, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.box(address)
	if err != nil {
		return err
	}
	if _, ok := b.folders[name]; ok {
		return fmt.Errorf("memMailboxes: create %s: %w", name, mailstore.ErrFolderExists)
	}
	b.folders[name] = nil
	return nil
}

// messages returns the messages of the INBOX of address, parsed.
func (m *memMailboxes) messages(t *testing.T, address string) []*pec.Message {
	t.Helper()
	m.mu.Lock()
	raws := m.boxes[strings.ToLower(address)].folders["INBOX"]
	m.mu.Unlock()
	var out []*pec.Message
	for _, raw := range raws {
		p, err := pec.Parse(raw, pec.ParseOptions{})
		if err != nil {
			t.Fatalf("a message in %s does not parse: %v", address, err)
		}
		out = append(out, p)
	}
	return out
}

// The gestori of the engine tests. Their keys are fixed, in testdata
// (made for these tests, never used elsewhere), so that no test pays for
// an RSA key generation; their certificates, self-signed with the
// profile of a gestore, are valid around trackStart.
const (
	engAlfa   = "Alfa PEC S.p.A."
	engBeta   = "Beta PEC S.p.A."
	engDomA   = "pec.alfa.test"
	engDomB   = "pec.beta.test"
	engMario  = "mario@pec.alfa.test"
	engLaura  = "laura@pec.alfa.test"
	engAnna   = "anna@pec.beta.test"
	engSecret = "segreto"
)

type engKeys struct {
	alfa, beta *pki.KeyPair
	index      *igpec.Index
}

var (
	engKeysOnce sync.Once
	engKeysVal  engKeys
	engKeysErr  error
)

// engineKeys returns the signing keys of Alfa and Beta and their indice
// dei gestori, read and certified on first use.
func engineKeys(t *testing.T) engKeys {
	t.Helper()
	engKeysOnce.Do(func() {
		var providers []*igpec.Provider
		for _, g := range []struct {
			name, domain, file string
			kp                 **pki.KeyPair
		}{
			{engAlfa, engDomA, "engine-alfa.key", &engKeysVal.alfa},
			{engBeta, engDomB, "engine-beta.key", &engKeysVal.beta},
		} {
			kp, err := engineKeyPair(g.name, g.domain, filepath.Join("testdata", g.file))
			if err != nil {
				engKeysErr = err
				return
			}
			*g.kp = kp
			p := &igpec.Provider{Name: g.name, MailReceipt: "posta-certificata@" + g.domain, ManagedDomains: []string{g.domain}}
			p.AddCertificate(kp.Certificate.Raw)
			providers = append(providers, p)
		}
		engKeysVal.index, engKeysErr = igpec.NewIndex(providers...)
	})
	if engKeysErr != nil {
		t.Fatal(engKeysErr)
	}
	return engKeysVal
}

// engineKeyPair reads the PKCS #8 RSA key in file and self-signs for it
// the signing certificate of the gestore name (pki.GestoreTemplate).
func engineKeyPair(name, domain, file string) (*pki.KeyPair, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", file)
	}
	tmpl := pki.GestoreTemplate(name, domain, trackStart.Add(-24*time.Hour), trackStart.AddDate(1, 0, 0))
	tmpl.SerialNumber = big.NewInt(1)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate: %w", file, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &pki.KeyPair{Certificate: cert, Key: key}, nil
}

// pecGestore returns the pec.Gestore of name and domain, signing with kp.
func pecGestore(t *testing.T, name, domain string, kp *pki.KeyPair) *pec.Gestore {
	t.Helper()
	g, err := pec.NewGestore(name, domain, &smime.Signer{Certificate: kp.Certificate, Key: kp.Key}, pec.RandomIDs(nil))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// engine is the gestore Alfa on in-memory fakes: no network, no disk but
// the spool directory, a clock that stays at trackStart unless moved.
type engine struct {
	s     *Server
	ops   *opLog
	led   *memLedger
	out   *memOutbox
	boxes *memMailboxes
	beta  *pec.Gestore // the other gestore, for buste to receive
	now   time.Time
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	k := engineKeys(t)
	ops := &opLog{}
	e := &engine{
		ops:   ops,
		led:   &memLedger{ops: ops},
		out:   &memOutbox{ops: ops, kick: make(chan struct{}, 1)},
		boxes: &memMailboxes{ops: ops},
		beta:  pecGestore(t, engBeta, engDomB, k.beta),
		now:   trackStart,
	}
	e.boxes.add(engMario, engSecret, 0)
	e.boxes.add(engLaura, engSecret, 0)
	s, err := New(Options{
		Gestore:   pecGestore(t, engAlfa, engDomA, k.alfa),
		Index:     k.index,
		Ledger:    e.led,
		Mailboxes: e.boxes,
		Queue:     e.out,
		TLS:       &tls.Config{},
		SpoolDir:  t.TempDir(),
		Now:       func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	return e
}

// drain delivers the local items of the outbox through the server's
// delivery function.
func (e *engine) drain(t *testing.T) {
	t.Helper()
	if _, err := e.out.drain(context.Background(), e.s.deliver); err != nil {
		t.Fatal(err)
	}
}
