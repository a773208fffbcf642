package mailstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custode/custode/ledger/diskspace"
	"github.com/dgraph-io/badger/v4"
)

// Defaults used for the zero values of the corresponding [Options] fields.
const (
	DefaultPasswordIterations = 600000
)

// Sentinel errors. The errors the Store returns wrap them with context: test
// for them with [errors.Is].
var (
	// ErrNoSuchMailbox reports that the address has no mailbox.
	ErrNoSuchMailbox = errors.New("no such mailbox")
	// ErrMailboxExists reports that AddMailbox found a mailbox for the
	// address.
	ErrMailboxExists = errors.New("mailbox already exists")
	// ErrConfusable reports that AddMailbox refused an address a reader
	// could take for an existing mailbox's (mailaddr.Confusable).
	ErrConfusable = errors.New("confusable with an existing mailbox")
	// ErrOverQuota reports that storing the message would take the mailbox
	// over its quota.
	ErrOverQuota = errors.New("over quota")
	// ErrAuthFailed reports a wrong password or an unknown address, which
	// are never told apart.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrRateLimited reports a login refused, its password unchecked,
	// because of recent failures (see [Store.Login]).
	ErrRateLimited = errors.New("too many failed logins, try again later")
	// ErrNoSuchFolder reports that the mailbox has no folder of that name.
	ErrNoSuchFolder = errors.New("no such folder")
	// ErrFolderExists reports that a folder of that name already exists.
	ErrFolderExists = errors.New("folder already exists")
	// ErrNoSuchMessage reports that the folder has no message with that
	// UID.
	ErrNoSuchMessage = errors.New("no such message")
	// ErrNotPermitted reports a refused operation: deleting INBOX or a
	// folder with subfolders, moving a folder under itself, going past
	// MaxFolders.
	ErrNotPermitted = errors.New("not permitted")
	// ErrInvalid reports a malformed argument: address, folder name, flag,
	// password, message, Key.
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed reports a call on a closed Store.
	ErrClosed = errors.New("store closed")
)

// Options configures [Open].
type Options struct {
	// Dir is the data directory, created if missing.
	Dir string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// PasswordIterations is the PBKDF2-SHA256 iteration count of new password
	// hashes; 0 means DefaultPasswordIterations. Existing hashes keep the
	// count they were made with.
	PasswordIterations int
	// MaxFailures is the number of failed logins of one mailbox from one
	// remote address that are not delayed (see [Store.Login]); 0 means
	// DefaultMaxFailures.
	MaxFailures int
	// MaxAddressFailures is the number of failed logins from one remote
	// address, whatever the mailbox, that are not delayed; 0 means
	// DefaultMaxAddressFailures.
	MaxAddressFailures int
	// LoginDelay is the delay after the first failure past the free
	// ones, doubled by each further failure; 0 means DefaultLoginDelay.
	LoginDelay time.Duration
	// MaxLoginDelay is the longest delay between two checked attempts, and
	// the time it takes to forget one failure; 0 means
	// DefaultMaxLoginDelay.
	MaxLoginDelay time.Duration
	// Ledger, if not nil, receives the login-failures events that count
	// failed and throttled logins (see [LoginRecordWindow]).
	Ledger Recorder
	// MinFreeBytes is the free space Deliver, Copy and Move keep on the
	// filesystem of Dir: while less is free they fail with a
	// *diskspace.LowSpaceError (errors.Is syscall.ENOSPC), and the
	// gestore tries again later. 0 means diskspace.DefaultReserve.
	MinFreeBytes uint64
}

// Limits on what the store accepts.
const (
	// MaxMessageSize is the largest message Deliver accepts: twice what
	// pec.DefaultMaxMessageSize lets a gestore take, since a busta di
	// trasporto carries the message it certifies.
	MaxMessageSize = 128 << 20
	// MaxFolders is the largest number of folders of one mailbox.
	MaxFolders = 1000
	// MaxFlags is the largest number of flags of one message.
	MaxFlags = 64
	// MaxKeySize is the largest delivery Key.
	MaxKeySize = 1024
	// MaxPasswordSize is the longest password accepted.
	MaxPasswordSize = 1024
)

const (
	// chunk is the number of messages changed per transaction by operations
	// on many messages, well under badger's transaction limits.
	chunk = 200
	// chunkBytes bounds the message bytes a copy puts in one transaction.
	chunkBytes = 64 << 20
	// gcInterval is how often the value log is garbage-collected.
	gcInterval = 10 * time.Minute
)

// Store is a durable mailbox store. It is safe for concurrent use.
type Store struct {
	db       *badger.DB
	prealloc *diskspace.Preallocator
	guard    *diskspace.Guard
	log      *slog.Logger
	now      func() time.Time
	iter     int

	closed atomic.Bool
	done   chan struct{}
	purge  chan struct{}
	wg     sync.WaitGroup

	// locksMu guards locks, the per-address mutexes that serialise every
	// change to one account (and so the order of its notifications).
	locksMu sync.Mutex
	locks   map[string]*addrLock
	// globalMu serialises changes to the global counters.
	globalMu sync.Mutex

	throttle throttle
	logins   loginLog
	// hashSem bounds the PBKDF2 computations running at once.
	hashSem   chan struct{}
	dummySalt []byte

	watchMu  sync.Mutex
	watchers map[string]map[*watcher]struct{}
}

type addrLock struct {
	mu   sync.Mutex
	refs int
}

// Open opens the store in opts.Dir, creating it if needed. A store left by a
// crash reopens at its last committed change.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("mailstore: open: no directory")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mailstore: open %s: %w", opts.Dir, err)
	}
	if opts.PasswordIterations < 0 || opts.MaxFailures < 0 || opts.MaxAddressFailures < 0 || opts.LoginDelay < 0 || opts.MaxLoginDelay < 0 {
		return nil, fmt.Errorf("mailstore: open %s: negative option: %w", opts.Dir, ErrInvalid)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mailstore: open %s: %w", opts.Dir, err)
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithLogger(badgerLogger{log}).
		WithLoggingLevel(badger.WARNING).
		// Message bytes and headers go to the value log; the LSM tree holds
		// keys and the small records.
		WithValueThreshold(1024).
		// Badger writes its value log and memtable log through memory maps
		// of sparse files twice these sizes; the Preallocator gives them
		// their blocks (see package diskspace). A value must fit in one
		// value-log file.
		WithValueLogFileSize(MaxMessageSize + 1<<20).
		WithMemTableSize(16 << 20).
		WithBlockCacheSize(32 << 20)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("mailstore: open %s: %w", opts.Dir, err)
	}
	prealloc, err := diskspace.Preallocate(opts.Dir, log)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mailstore: open %s: %w", opts.Dir, err)
	}
	s := &Store{
		db:        db,
		prealloc:  prealloc,
		guard:     diskspace.NewGuard(opts.Dir, opts.MinFreeBytes),
		log:       log,
		now:       opts.Now,
		iter:      opts.PasswordIterations,
		done:      make(chan struct{}),
		purge:     make(chan struct{}, 1),
		locks:     make(map[string]*addrLock),
		hashSem:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		dummySalt: make([]byte, saltSize),
		watchers:  make(map[string]map[*watcher]struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.iter == 0 {
		s.iter = DefaultPasswordIterations
	}
	s.throttle.init(cmp.Or(opts.MaxFailures, DefaultMaxFailures), cmp.Or(opts.MaxAddressFailures, DefaultMaxAddressFailures),
		cmp.Or(opts.LoginDelay, DefaultLoginDelay), max(cmp.Or(opts.MaxLoginDelay, DefaultMaxLoginDelay), opts.LoginDelay))
	if err := s.throttle.load(db, s.now()); err != nil {
		prealloc.Close()
		db.Close()
		return nil, fmt.Errorf("mailstore: open %s: login failures: %w", opts.Dir, err)
	}
	s.logins.init(opts.Ledger)
	if _, err := rand.Read(s.dummySalt); err != nil {
		prealloc.Close()
		db.Close()
		return nil, fmt.Errorf("mailstore: open %s: %w", opts.Dir, err)
	}
	s.wg.Add(1)
	go s.janitor()
	s.triggerPurge() // finish deletions a crash interrupted
	return s, nil
}

// Close closes the store, waiting for its background work to stop. Calls made
// after Close return errors wrapping ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("mailstore: close: %w", ErrClosed)
	}
	close(s.done)
	s.wg.Wait()
	s.flushLogins(true)
	if err := errors.Join(s.db.Close(), s.prealloc.Close()); err != nil {
		return fmt.Errorf("mailstore: close: %w", err)
	}
	return nil
}

// janitor purges the messages of deleted folders and garbage-collects the
// value log, until the store closes.
func (s *Store) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	flush := time.NewTicker(time.Minute)
	defer flush.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.logins.kick:
			s.flushLogins(false)
		case <-flush.C:
			s.flushLogins(false)
		case <-s.purge:
			if err := s.purgeDeleted(); err != nil {
				s.log.Error("mailstore: purging deleted folders", "err", err)
			}
			s.runGC()
		case <-t.C:
			s.runGC()
		}
	}
}

func (s *Store) triggerPurge() {
	select {
	case s.purge <- struct{}{}:
	default:
	}
}

func (s *Store) runGC() {
	for i := 0; i < 100; i++ {
		select {
		case <-s.done:
			return
		default:
		}
		if err := s.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("mailstore: value log GC", "err", err)
			}
			return
		}
	}
}

// purgeDeleted deletes the messages of the folders marked deleted, a chunk per
// transaction, then the marks. Quotas were adjusted when the folders were
// deleted: the messages were already unreachable.
func (s *Store) purgeDeleted() error {
	var ids [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pTomb}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ids = append(ids, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, tomb := range ids {
		if len(tomb) != 9 {
			continue
		}
		fid := be64(tomb[1:])
		for {
			select {
			case <-s.done:
				return nil
			default:
			}
			n := 0
			err := s.db.Update(func(txn *badger.Txn) error {
				var keys [][]byte
				it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(pMeta, fid)})
				for it.Rewind(); it.Valid() && len(keys) < chunk; it.Next() {
					keys = append(keys, it.Item().KeyCopy(nil))
				}
				it.Close()
				for _, k := range keys {
					uid := be32(k[9:])
					for _, p := range []byte{pMeta, pHeader, pBody} {
						if err := txn.Delete(msgKey(p, fid, uid)); err != nil {
							return err
						}
					}
				}
				n = len(keys)
				if n == 0 {
					return txn.Delete(tomb)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n == 0 {
				s.log.Debug("mailstore: purged deleted folder", "folder_id", fid)
				break
			}
		}
	}
	return nil
}

// lock serialises the changes to one account.
func (s *Store) lock(addr string) (unlock func()) {
	s.locksMu.Lock()
	l := s.locks[addr]
	if l == nil {
		l = &addrLock{}
		s.locks[addr] = l
	}
	l.refs++
	s.locksMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.locksMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.locks, addr)
		}
		s.locksMu.Unlock()
	}
}

// update runs fn in a read-write transaction and commits it durably.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := s.db.Update(fn)
		if errors.Is(err, badger.ErrConflict) && attempt < 10 {
			continue
		}
		return err
	}
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// Key prefixes. Addresses and folder names never contain NUL.
const (
	pAccount = 'a' // a addr -> accountRec
	pFolder  = 'f' // f addr NUL name -> folderRec
	pMeta    = 'm' // m fid(8) uid(4) -> msgRec
	pHeader  = 'h' // h fid uid -> header bytes
	pBody    = 'b' // b fid uid -> message bytes
	pKey     = 'k' // k addr NUL key -> Delivered
	pTomb    = 'd' // d fid -> deleted folder whose messages remain to purge
	pGlobal  = 'g' // g -> globalRec

	pThrottle = 'l' // l key -> penaltyRec, with a TTL (see throttle.go)
)

func accountKey(addr string) []byte { return append([]byte{pAccount}, addr...) }

func folderPrefix(addr string) []byte {
	k := append([]byte{pFolder}, addr...)
	return append(k, 0)
}

func folderKey(addr, name string) []byte { return append(folderPrefix(addr), name...) }

func deliveryKey(addr, key string) []byte {
	k := append([]byte{pKey}, addr...)
	k = append(k, 0)
	return append(k, key...)
}

func msgPrefix(p byte, fid uint64) []byte {
	k := make([]byte, 9)
	k[0] = p
	put64(k[1:], fid)
	return k
}

func msgKey(p byte, fid uint64, uid uint32) []byte {
	k := make([]byte, 13)
	k[0] = p
	put64(k[1:], fid)
	put32(k[9:], uid)
	return k
}

func tombKey(fid uint64) []byte { return msgPrefix(pTomb, fid) }

func put64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func put32(b []byte, v uint32) {
	for i := 3; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func be32(b []byte) uint32 {
	var v uint32
	for _, c := range b[:4] {
		v = v<<8 | uint32(c)
	}
	return v
}

// Records, stored as JSON.
type accountRec struct {
	Password string `json:"pw"`
	Quota    int64  `json:"quota"`
	Used     int64  `json:"used"`
	Messages int    `json:"n"`
}

type folderRec struct {
	ID          uint64 `json:"id"`
	UIDValidity uint32 `json:"uv"`
	UIDNext     uint32 `json:"next"`
	Messages    int    `json:"n"`
	Unseen      int    `json:"unseen"`
	Size        int64  `json:"size"`
	Subscribed  bool   `json:"sub,omitempty"`
}

type msgRec struct {
	Size  int64     `json:"size"`
	Time  time.Time `json:"t"`
	Flags []string  `json:"f,omitempty"`
}

type globalRec struct {
	NextFolderID    uint64 `json:"fid"`
	NextUIDValidity uint32 `json:"uv"`
}

type deliveryRec struct {
	UID         uint32 `json:"uid"`
	UIDValidity uint32 `json:"uv"`
}

func getJSON(txn *badger.Txn, key []byte, v any, notFound error) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("corrupt record %q: %w", bytes.ReplaceAll(key, []byte{0}, []byte{'/'}), err)
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

func getAccount(txn *badger.Txn, addr string) (accountRec, error) {
	var a accountRec
	err := getJSON(txn, accountKey(addr), &a, ErrNoSuchMailbox)
	return a, err
}

func getFolder(txn *badger.Txn, addr, name string) (folderRec, error) {
	var f folderRec
	err := getJSON(txn, folderKey(addr, name), &f, ErrNoSuchFolder)
	return f, err
}

// newFolder allocates a folder ID and a UIDVALIDITY, both unique in the
// store and never reused. The caller holds globalMu until txn commits.
func (s *Store) newFolder(txn *badger.Txn) (folderRec, error) {
	var g globalRec
	err := getJSON(txn, []byte{pGlobal}, &g, errNotFound)
	if errors.Is(err, errNotFound) {
		g = globalRec{NextFolderID: 1, NextUIDValidity: uint32(s.now().Unix())}
	} else if err != nil {
		return folderRec{}, err
	}
	if g.NextUIDValidity == 0 {
		g.NextUIDValidity = 1
	}
	f := folderRec{ID: g.NextFolderID, UIDValidity: g.NextUIDValidity, UIDNext: 1, Subscribed: true}
	g.NextFolderID++
	g.NextUIDValidity++
	if err := setJSON(txn, []byte{pGlobal}, g); err != nil {
		return folderRec{}, err
	}
	return f, nil
}

var errNotFound = errors.New("not found")

// badgerLogger routes badger's logs to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("mailstore: badger: " + string(bytes.TrimSpace(fmt.Appendf(nil, f, a...))))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("mailstore: badger: " + string(bytes.TrimSpace(fmt.Appendf(nil, f, a...))))
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("mailstore: badger: " + string(bytes.TrimSpace(fmt.Appendf(nil, f, a...))))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("mailstore: badger: " + string(bytes.TrimSpace(fmt.Appendf(nil, f, a...))))
}
