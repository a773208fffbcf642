package mailstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Login throttling defaults, used for the zero values of the corresponding
// [Options] fields.
const (
	// DefaultMaxFailures is the number of failed logins of one account from
	// one remote address that are not delayed.
	DefaultMaxFailures = 5
	// DefaultMaxAddressFailures is the number of failed logins from one
	// remote address, whatever the account, that are not delayed.
	DefaultMaxAddressFailures = 15
	// DefaultLoginDelay is the first delay: each further failure doubles
	// it, up to MaxLoginDelay.
	DefaultLoginDelay = time.Second
	// DefaultMaxLoginDelay is the longest delay, and the time it takes to
	// forget one failure.
	DefaultMaxLoginDelay = 15 * time.Minute
)

const (
	// maxPenalties bounds the throttle's entries in memory and on disk.
	maxPenalties = 100_000
	// maxWaiting bounds the attempts waiting for the result of others.
	maxWaiting = 1024
	// maxPenaltyCount bounds the failures one entry counts.
	maxPenaltyCount = 64
)

// ThrottledError is the error of a login refused, without checking the
// password, because the account failed too often from the client's
// address, or the address failed too often for any account. It wraps
// ErrRateLimited.
type ThrottledError struct {
	// RetryAfter is how long until an attempt will be checked again.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v: retry in %v", ErrRateLimited, e.RetryAfter.Round(time.Second))
}

// Unwrap returns ErrRateLimited.
func (e *ThrottledError) Unwrap() error { return ErrRateLimited }

// RemoteKey returns the address a client is throttled and recorded by:
// remote's IP address, without port or zone, an IPv4-mapped IPv6 address
// as IPv4, any other IPv6 address as its /64 prefix ("2001:db8::/64"); and
// "unknown" for a remote that is not an IP address, all of which share one
// entry.
func RemoteKey(remote string) string {
	a, err := netip.ParseAddr(remote)
	if err != nil {
		ap, perr := netip.ParseAddrPort(remote)
		if perr != nil {
			return "unknown"
		}
		a = ap.Addr()
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return "unknown"
	}
	return p.String()
}

// throttle delays logins, as Dovecot's auth penalty does: failures are
// counted per (account, remote address) and per remote address; past a
// number of free failures, each further one doubles the time before the
// next attempt is checked, from first up to max; one failure is forgotten every max
// without failures. A correct password from an address with no failures
// is therefore never refused. The state is mirrored in the store's badger
// so that a restart keeps it.
type throttle struct {
	freePair, freeAddr int
	first, max         time.Duration

	mu       sync.Mutex
	m        map[string]*penalty // pairKey or addrKey
	changed  chan struct{}       // closed and replaced when an attempt ends
	waiting  int
	sweepAt  int
	persistM sync.Mutex // orders the writes of the entries
}

type penalty struct {
	n        int       // failures
	last     time.Time // of the last failure
	inflight int       // attempts being checked
}

// penaltyRec is a penalty as stored, under pThrottle + key.
type penaltyRec struct {
	N    int       `json:"n"`
	Last time.Time `json:"t"`
}

func pairKey(account, remote string) string { return "p\x00" + account + "\x00" + remote }
func addrKey(remote string) string          { return "r\x00" + remote }

func (t *throttle) init(freePair, freeAddr int, first, max time.Duration) {
	t.freePair, t.freeAddr, t.first, t.max = freePair, freeAddr, first, max
	t.m = make(map[string]*penalty)
	t.changed = make(chan struct{})
	t.sweepAt = 1024
}

// count is p's failures at now, one forgotten every max since the last.
func (t *throttle) count(p *penalty, now time.Time) int {
	if p == nil {
		return 0
	}
	d := now.Sub(p.last)
	if d <= 0 {
		return p.n
	}
	return max(0, p.n-int(min(d/t.max, maxPenaltyCount)))
}

// delay is the time after the last of n failures before the next attempt
// is checked.
func (t *throttle) delay(n, free int) time.Duration {
	if n < free {
		return 0
	}
	d := t.first
	for i := free; i < n && d < t.max; i++ {
		d *= 2
	}
	return min(d, t.max)
}

// begin decides whether an attempt on keys (pair first, then address) may
// be checked now. It returns nil, having counted the attempt in flight, or
// a *ThrottledError, or ctx's error. An attempt that would be delayed if
// the attempts already in flight on the same keys failed waits for their
// outcome: parallel guesses get no more tries than serial ones.
func (t *throttle) begin(ctx context.Context, now func() time.Time, keys [2]string) error {
	frees := [2]int{t.freePair, t.freeAddr}
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		at := now()
		var until time.Time
		busy := false
		for i, k := range keys {
			p := t.m[k]
			n := t.count(p, at)
			if n == 0 && p != nil && p.inflight == 0 {
				delete(t.m, k)
				p = nil
			}
			if d := t.delay(n, frees[i]); d > 0 && at.Before(p.last.Add(d)) {
				until = later(until, p.last.Add(d))
			}
			if p != nil && p.inflight > 0 && t.delay(n+p.inflight, frees[i]) > 0 {
				busy = true
			}
		}
		if !until.IsZero() {
			return &ThrottledError{RetryAfter: until.Sub(at)}
		}
		if !busy {
			break
		}
		if t.waiting >= maxWaiting {
			return &ThrottledError{RetryAfter: t.first}
		}
		ch := t.changed
		t.waiting++
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		t.mu.Lock()
		t.waiting--
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	for _, k := range keys {
		p := t.m[k]
		if p == nil {
			p = &penalty{}
			t.m[k] = p
		}
		p.inflight++
	}
	if len(t.m) > t.sweepAt {
		t.sweep(now())
	}
	return nil
}

// end records the outcome of an attempt begun with begin: a failure counts
// on both keys, a success clears the pair's count (never the address's:
// logging in to one's own account must not let an address spray again).
// An attempt whose password could not be checked (checked false) changes
// nothing. It returns the entries to write to the store.
func (t *throttle) end(now time.Time, keys [2]string, ok, checked bool) map[string]penaltyRec {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.changed)
	t.changed = make(chan struct{})
	out := map[string]penaltyRec{}
	for i, k := range keys {
		p := t.m[k]
		if p == nil {
			continue
		}
		p.inflight--
		switch {
		case !checked:
		case !ok:
			p.n = min(t.count(p, now)+1, maxPenaltyCount)
			p.last = later(p.last, now)
			out[k] = penaltyRec{N: p.n, Last: p.last}
		case i == 0 && p.n > 0:
			p.n = 0
			out[k] = penaltyRec{}
		}
		if p.inflight == 0 && t.count(p, now) == 0 {
			delete(t.m, k)
		}
	}
	return out
}

// sweep forgets the entries that count no failure and, past maxPenalties,
// those that would expire first. The caller holds t.mu.
func (t *throttle) sweep(now time.Time) {
	type exp struct {
		k  string
		at time.Time
	}
	var idle []exp
	for k, p := range t.m {
		if p.inflight > 0 {
			continue
		}
		n := t.count(p, now)
		if n == 0 {
			delete(t.m, k)
			continue
		}
		idle = append(idle, exp{k, p.last.Add(time.Duration(n) * t.max)})
	}
	if len(t.m) > maxPenalties {
		slices.SortFunc(idle, func(a, b exp) int { return a.at.Compare(b.at) })
		for _, e := range idle {
			if len(t.m) <= maxPenalties*3/4 {
				break
			}
			delete(t.m, e.k)
		}
	}
	// Sweep again when the map doubles, or reaches the bound.
	t.sweepAt = max(1024, min(2*len(t.m), maxPenalties))
}

// load reads the entries the store kept, at Open.
func (t *throttle) load(db *badger.DB, now time.Time) error {
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pThrottle}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r penaltyRec
			err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &r) })
			k := string(it.Item().Key()[1:])
			if err != nil || (!strings.HasPrefix(k, "p\x00") && !strings.HasPrefix(k, "r\x00")) {
				continue // a damaged entry only forgets failures
			}
			p := &penalty{n: min(max(r.N, 0), maxPenaltyCount), last: r.Last}
			if t.count(p, now) > 0 {
				t.m[k] = p
			}
			if len(t.m) > t.sweepAt {
				t.sweep(now)
			}
		}
		return nil
	})
}

// persist writes recs to the store, each kept until it counts no failure.
func (s *Store) persistPenalties(recs map[string]penaltyRec) {
	if len(recs) == 0 || s.closed.Load() {
		return
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for k, r := range recs {
			key := append([]byte{pThrottle}, k...)
			if r.N == 0 {
				if err := txn.Delete(key); err != nil {
					return err
				}
				continue
			}
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			ttl := time.Duration(r.N)*s.throttle.max + time.Minute
			if err := txn.SetEntry(badger.NewEntry(key, b).WithTTL(ttl)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, badger.ErrDBClosed) {
		// The failures stay counted in memory; only a restart would
		// forget them.
		s.log.Error("mailstore: saving login failures", "err", err)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
