package mailstore

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/ledger"
)

// Recorder appends events to the ledger. *ledger.Ledger satisfies it.
type Recorder interface {
	Append(ctx context.Context, events ...ledger.Event) ([]uint64, error)
}

const (
	// LoginRecordWindow is the aggregation window of failed logins: the
	// ledger gets at most one login-failures event per account, remote
	// address and window.
	LoginRecordWindow = 15 * time.Minute
	// MaxLoginRecords bounds the events of one window; the pairs past it
	// are counted together in one more event whose account and remote are
	// "*".
	MaxLoginRecords = 1000
	// maxPendingRecords bounds the events kept while the ledger refuses
	// them.
	maxPendingRecords = 4 * MaxLoginRecords
	// flushTimeout bounds one flush to the ledger.
	flushTimeout = 30 * time.Second
)

// Services named in login-failures events.
const (
	ServiceSMTP = "smtp"
	ServiceIMAP = "imap"
	ServiceAPI  = "api"
)

type failKey struct{ account, remote string }

type failAgg struct {
	first, last       time.Time
	failed, throttled int
	services          []string
}

// loginLog aggregates failed and throttled logins into login-failures
// events, one per (account, remote, window), which it appends to the
// ledger when the window closes or the store closes.
type loginLog struct {
	rec Recorder

	countMu sync.Mutex
	counts  map[string]*[2]uint64 // service -> failed, throttled; under countMu

	mu      sync.Mutex
	start   time.Time // of the open window
	m       map[failKey]*failAgg
	pending []ledger.Event // of closed windows, not yet appended
	kick    chan struct{}  // a window closed
	flushMu sync.Mutex     // one flush at a time, in order
}

func (g *loginLog) init(rec Recorder) {
	g.rec = rec
	g.m = make(map[failKey]*failAgg)
	g.kick = make(chan struct{}, 1)
}

// add counts one failed (or, with throttled, refused) attempt.
func (g *loginLog) add(now time.Time, service, account, remote string, throttled bool) {
	g.countMu.Lock()
	if g.counts == nil {
		g.counts = make(map[string]*[2]uint64)
	}
	c := g.counts[service]
	if c == nil {
		c = new([2]uint64)
		g.counts[service] = c
	}
	if throttled {
		c[1]++
	} else {
		c[0]++
	}
	g.countMu.Unlock()
	if g.rec == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w := now.Truncate(LoginRecordWindow); !w.Equal(g.start) {
		if len(g.m) > 0 {
			g.closeWindow()
			select {
			case g.kick <- struct{}{}:
			default:
			}
		}
		g.start = w
	}
	k := failKey{account, remote}
	a := g.m[k]
	if a == nil {
		if len(g.m) >= MaxLoginRecords {
			k = failKey{"*", "*"}
			a = g.m[k]
		}
		if a == nil {
			a = &failAgg{first: now}
			g.m[k] = a
		}
	}
	a.last = later(a.last, now)
	if throttled {
		a.throttled++
	} else {
		a.failed++
	}
	if service != "" && !slices.Contains(a.services, service) && len(a.services) < 8 {
		a.services = append(a.services, service)
	}
}

// closeWindow turns the open window's counts into pending events. The
// caller holds g.mu.
func (g *loginLog) closeWindow() {
	keys := make([]failKey, 0, len(g.m))
	for k := range g.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b failKey) int {
		return g.m[a].last.Compare(g.m[b].last)
	})
	for _, k := range keys {
		a := g.m[k]
		d := map[string]string{
			ledger.DetailLoginRemote: k.remote,
			ledger.DetailLoginFrom:   a.first.UTC().Format(time.RFC3339Nano),
		}
		if k.account != "" {
			d[ledger.DetailLoginAccount] = k.account
		}
		if a.failed > 0 {
			d[ledger.DetailLoginFailed] = strconv.Itoa(a.failed)
		}
		if a.throttled > 0 {
			d[ledger.DetailLoginThrottled] = strconv.Itoa(a.throttled)
		}
		if len(a.services) > 0 {
			slices.Sort(a.services)
			d[ledger.DetailLoginServices] = strings.Join(a.services, ",")
		}
		g.pending = append(g.pending, ledger.Event{Kind: ledger.KindLoginFailures, Time: a.last.UTC(), Details: d})
	}
	if n := len(g.pending) - maxPendingRecords; n > 0 {
		g.pending = g.pending[n:] // the oldest go; flush has logged why
	}
	clear(g.m)
}

// flush appends the events of the closed windows to the ledger, and with
// all those of the open window too. Events the ledger refuses are kept for
// the next flush, up to a bound.
func (s *Store) flushLogins(all bool) {
	g := &s.logins
	if g.rec == nil {
		return
	}
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	g.mu.Lock()
	if len(g.m) > 0 && (all || !s.now().Truncate(LoginRecordWindow).Equal(g.start)) {
		g.closeWindow()
	}
	events := g.pending
	g.pending = nil
	g.mu.Unlock()
	for len(events) > 0 {
		n := min(len(events), ledger.MaxAppendEvents)
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		_, err := g.rec.Append(ctx, events[:n]...)
		cancel()
		if err != nil {
			s.log.Error("mailstore: recording failed logins in the ledger", "events", len(events), "err", err)
			g.mu.Lock()
			g.pending = append(events, g.pending...)
			if n := len(g.pending) - maxPendingRecords; n > 0 {
				s.log.Error("mailstore: failed-login records dropped: the ledger refuses them", "dropped", n)
				g.pending = g.pending[n:]
			}
			g.mu.Unlock()
			return
		}
		events = events[n:]
	}
}

// LoginFailures returns the failed password checks and the attempts the
// throttle refused unchecked, for service (ServiceSMTP, ServiceIMAP or
// ServiceAPI), since the store was opened.
func (s *Store) LoginFailures(service string) (failed, throttled uint64) {
	g := &s.logins
	g.countMu.Lock()
	defer g.countMu.Unlock()
	if c := g.counts[service]; c != nil {
		return c[0], c[1]
	}
	return 0, 0
}
