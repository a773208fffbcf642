package mailstore

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/pec/mailaddr"
	"github.com/dgraph-io/badger/v4"
)

// MailboxInfo describes a mailbox (an account).
type MailboxInfo struct {
	// Address is the mailbox's address, in the canonical form of package
	// mailaddr. A store made before that form was enforced may list an
	// address without one: no login or lookup reaches such a mailbox.
	Address string
	// Quota is the most bytes of messages the mailbox may hold; 0 means
	// no limit.
	Quota int64
	// Used is the bytes of the messages in all its folders.
	Used int64
	// Messages is the number of messages in all its folders.
	Messages int
}

// AddMailbox creates the mailbox of address, with its INBOX, password and
// quota in bytes (0 = unlimited). It returns an error wrapping
// ErrMailboxExists if the address already has one, ErrConfusable if a
// reader could take it for an existing mailbox's address (the same
// mailaddr.Skeleton), ErrInvalid for an address without a canonical form
// (non-ASCII, quoted, trailing dot...), an empty password or a negative
// quota.
func (s *Store) AddMailbox(ctx context.Context, address, password string, quota int64) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("mailstore: add mailbox: %w", err)
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("mailstore: add mailbox %s: %w", addr, err)
	}
	if quota < 0 {
		return fmt.Errorf("mailstore: add mailbox %s: negative quota: %w", addr, ErrInvalid)
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return fmt.Errorf("mailstore: add mailbox %s: %w", addr, err)
	}
	unlock := s.lock(addr)
	defer unlock()
	s.globalMu.Lock()
	defer s.globalMu.Unlock()
	err = s.update(ctx, func(txn *badger.Txn) error {
		if _, err := getAccount(txn, addr); err == nil {
			return ErrMailboxExists
		} else if !errors.Is(err, ErrNoSuchMailbox) {
			return err
		}
		if other, err := confusableAccount(txn, addr); err != nil {
			return err
		} else if other != "" {
			return fmt.Errorf("it looks like the existing mailbox %s (same skeleton %q): %w", other, mailaddr.Skeleton(addr), ErrConfusable)
		}
		f, err := s.newFolder(txn)
		if err != nil {
			return err
		}
		if err := setJSON(txn, folderKey(addr, Inbox), f); err != nil {
			return err
		}
		return setJSON(txn, accountKey(addr), accountRec{Password: hash, Quota: quota})
	})
	if err != nil {
		return fmt.Errorf("mailstore: add mailbox %s: %w", addr, err)
	}
	s.log.Info("mailstore: mailbox added", "address", addr, "quota", quota)
	return nil
}

// confusableAccount returns the address of an existing mailbox a reader
// could take addr for, or "". Every account is compared: a store holds
// thousands of mailboxes, and AddMailbox is rare.
func confusableAccount(txn *badger.Txn, addr string) (string, error) {
	skel := mailaddr.Skeleton(addr)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		other := string(it.Item().Key()[1:])
		if other != addr && mailaddr.Skeleton(other) == skel {
			return other, nil
		}
	}
	return "", nil
}

// SetPassword replaces the password of address's mailbox.
func (s *Store) SetPassword(ctx context.Context, address, password string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("mailstore: set password: %w", err)
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("mailstore: set password of %s: %w", addr, err)
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return fmt.Errorf("mailstore: set password of %s: %w", addr, err)
	}
	err = s.changeAccount(ctx, addr, func(a *accountRec) error {
		a.Password = hash
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: set password of %s: %w", addr, err)
	}
	s.log.Info("mailstore: password changed", "address", addr)
	return nil
}

// SetQuota sets the quota of address's mailbox, in bytes (0 = unlimited). A
// quota below what the mailbox uses refuses further messages; it deletes
// none.
func (s *Store) SetQuota(ctx context.Context, address string, quota int64) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("mailstore: set quota: %w", err)
	}
	if quota < 0 {
		return fmt.Errorf("mailstore: set quota of %s: negative quota: %w", addr, ErrInvalid)
	}
	err = s.changeAccount(ctx, addr, func(a *accountRec) error {
		a.Quota = quota
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: set quota of %s: %w", addr, err)
	}
	s.log.Info("mailstore: quota changed", "address", addr, "quota", quota)
	return nil
}

func (s *Store) changeAccount(ctx context.Context, addr string, fn func(*accountRec) error) error {
	unlock := s.lock(addr)
	defer unlock()
	return s.update(ctx, func(txn *badger.Txn) error {
		a, err := getAccount(txn, addr)
		if err != nil {
			return err
		}
		if err := fn(&a); err != nil {
			return err
		}
		return setJSON(txn, accountKey(addr), a)
	})
}

// Mailbox describes address's mailbox, or returns an error wrapping
// ErrNoSuchMailbox.
func (s *Store) Mailbox(ctx context.Context, address string) (MailboxInfo, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return MailboxInfo{}, fmt.Errorf("mailstore: mailbox: %w", err)
	}
	var a accountRec
	err = s.view(ctx, func(txn *badger.Txn) error {
		a, err = getAccount(txn, addr)
		return err
	})
	if err != nil {
		return MailboxInfo{}, fmt.Errorf("mailstore: mailbox %s: %w", addr, err)
	}
	return MailboxInfo{Address: addr, Quota: a.Quota, Used: a.Used, Messages: a.Messages}, nil
}

// Mailboxes describes every mailbox, sorted by address.
func (s *Store) Mailboxes(ctx context.Context) ([]MailboxInfo, error) {
	var out []MailboxInfo
	err := s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var a accountRec
			k := it.Item().KeyCopy(nil)
			if err := getJSON(txn, k, &a, ErrNoSuchMailbox); err != nil {
				return err
			}
			out = append(out, MailboxInfo{Address: string(k[1:]), Quota: a.Quota, Used: a.Used, Messages: a.Messages})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: list mailboxes: %w", err)
	}
	return out, nil
}

// Authenticate checks address's password. remote is the client's IP address
// ("" if unknown).
//
// Failed attempts are counted per address and per remote address; once
// either has MaxFailures failures within FailureWindow, Authenticate returns
// an error wrapping ErrRateLimited without checking the password, until the
// oldest failure leaves the window. A wrong password and an unknown address
// both give ErrAuthFailed, after the same PBKDF2 work. Success resets the
// address's count. Neither the password nor its hash ever appears in errors
// or logs.
func (s *Store) Authenticate(ctx context.Context, address, password, remote string) error {
	addr, addrErr := NormalizeAddress(address)
	akey := "a:" + addr
	if addrErr != nil {
		// Still count it, under a bounded key, so that garbage addresses
		// cannot bypass the per-remote limit nor be told apart by timing.
		akey = "a:" + clip(strings.ToLower(address))
	}
	rkey := ""
	if remote != "" {
		rkey = "r:" + clip(remote)
	}
	now := s.now()
	if !s.auth.begin(now, s.window, s.maxF, akey, rkey) {
		s.log.Warn("mailstore: login rate-limited", "address", clip(address), "remote", clip(remote))
		return fmt.Errorf("mailstore: authenticate %s: %w", clip(address), ErrRateLimited)
	}
	ok, err := s.checkPassword(ctx, addr, addrErr == nil, password)
	s.auth.end(now, akey, rkey, ok, err == nil)
	if err != nil {
		return fmt.Errorf("mailstore: authenticate %s: %w", clip(address), err)
	}
	if !ok {
		s.log.Warn("mailstore: login failed", "address", clip(address), "remote", clip(remote))
		return fmt.Errorf("mailstore: authenticate %s: %w", clip(address), ErrAuthFailed)
	}
	return nil
}

func (s *Store) checkPassword(ctx context.Context, addr string, valid bool, password string) (bool, error) {
	var stored string
	if valid {
		err := s.view(ctx, func(txn *badger.Txn) error {
			a, err := getAccount(txn, addr)
			stored = a.Password
			return err
		})
		if err != nil && !errors.Is(err, ErrNoSuchMailbox) {
			return false, err
		}
	}
	iter, salt, want, perr := parseHash(stored)
	if perr != nil {
		if stored != "" {
			s.log.Error("mailstore: unreadable password hash", "address", addr)
		}
		// Unknown address: do the same work against a dummy hash.
		iter, salt, want = s.iter, s.dummySalt, nil
	}
	if len(password) > MaxPasswordSize {
		password = password[:MaxPasswordSize]
		want = nil
	}
	got, err := s.pbkdf2(ctx, password, salt, iter)
	if err != nil {
		return false, err
	}
	if want == nil {
		return false, nil
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

const (
	hashScheme = "pbkdf2-sha256"
	saltSize   = 16
	keySize    = 32
	maxIter    = 10_000_000
)

func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("empty password: %w", ErrInvalid)
	}
	if len(password) > MaxPasswordSize {
		return fmt.Errorf("password longer than %d bytes: %w", MaxPasswordSize, ErrInvalid)
	}
	return nil
}

// hashPassword returns "pbkdf2-sha256$iter$salt$hash", salt and hash in
// unpadded standard base64.
func (s *Store) hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := s.pbkdf2(ctx, password, salt, s.iter)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return hashScheme + "$" + strconv.Itoa(s.iter) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

func parseHash(h string) (iter int, salt, key []byte, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return 0, nil, nil, errors.New("not a pbkdf2-sha256 hash")
	}
	iter, err = strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIter {
		return 0, nil, nil, errors.New("bad iteration count")
	}
	enc := base64.RawStdEncoding
	if salt, err = enc.DecodeString(parts[2]); err != nil || len(salt) == 0 {
		return 0, nil, nil, errors.New("bad salt")
	}
	if key, err = enc.DecodeString(parts[3]); err != nil || len(key) != keySize {
		return 0, nil, nil, errors.New("bad key")
	}
	return iter, salt, key, nil
}

// pbkdf2 derives the key, at most GOMAXPROCS at a time.
func (s *Store) pbkdf2(ctx context.Context, password string, salt []byte, iter int) ([]byte, error) {
	select {
	case s.hashSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.hashSem }()
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, keySize)
	if err != nil {
		// The error of pbkdf2.Key names no input; keep it that way.
		return nil, errors.New("password hashing failed")
	}
	return key, nil
}

// authLimiter counts failed logins per key ("a:address", "r:remote").
type authLimiter struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled when an attempt ends
	m       map[string]*failures
	sweepAt int
}

type failures struct {
	times    []time.Time // failures within the window, oldest first
	inflight int         // attempts being checked
}

func (l *authLimiter) init() {
	l.cond = sync.NewCond(&l.mu)
	l.m = make(map[string]*failures)
	l.sweepAt = 1024
}

// begin reports whether an attempt may go ahead, and counts it as in flight.
// An attempt that could be one failure too many if those in flight failed
// waits for them: parallel guesses get no more tries than serial ones.
func (l *authLimiter) begin(now time.Time, window time.Duration, maxF int, keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		busy := false
		for _, k := range keys {
			f := l.m[k]
			if k == "" || f == nil {
				continue
			}
			f.prune(now, window)
			if len(f.times) >= maxF {
				return false
			}
			if len(f.times)+f.inflight >= maxF {
				busy = true
			}
		}
		if !busy {
			break
		}
		l.cond.Wait()
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		f := l.m[k]
		if f == nil {
			f = &failures{}
			l.m[k] = f
		}
		f.inflight++
	}
	if len(l.m) > l.sweepAt {
		for k, f := range l.m {
			f.prune(now, window)
			if len(f.times) == 0 && f.inflight == 0 {
				delete(l.m, k)
			}
		}
		l.sweepAt = max(1024, 2*len(l.m))
	}
	return true
}

// end records the outcome of an attempt begun with begin. An attempt that
// could not be checked (count false) is not a failure.
func (l *authLimiter) end(now time.Time, akey, rkey string, ok, count bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.cond.Broadcast()
	for _, k := range []string{akey, rkey} {
		if k == "" {
			continue
		}
		f := l.m[k]
		if f == nil {
			continue
		}
		f.inflight--
		switch {
		case ok && k == akey:
			f.times = nil
		case !ok && count:
			f.times = append(f.times, now)
		}
		if len(f.times) == 0 && f.inflight == 0 {
			delete(l.m, k)
		}
	}
}

func (f *failures) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(f.times) && now.Sub(f.times[i]) >= window {
		i++
	}
	f.times = f.times[i:]
}
