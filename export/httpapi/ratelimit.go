package httpapi

import (
	"math"
	"sync"
	"time"
)

// RateLimit is a token bucket: Rate requests per second sustained, Burst
// at once.
type RateLimit struct {
	Rate  float64
	Burst int
}

// Defaults of the rate limits.
var (
	// DefaultPerPrincipal lets one user make a few requests a second, with
	// room for a client paging through results: every request appends to
	// the ledger, so a user must not be able to flood it.
	DefaultPerPrincipal = RateLimit{Rate: 5, Burst: 30}
	// DefaultPerRemote is looser, for several users behind one address,
	// and bounds what an unauthenticated client can try.
	DefaultPerRemote = RateLimit{Rate: 20, Burst: 100}
)

// maxBuckets bounds the keys a limiter tracks.
const maxBuckets = 100_000

// limiter is a set of token buckets by key. Safe for concurrent use.
type limiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rl RateLimit) *limiter {
	return &limiter{rate: rl.Rate, burst: float64(rl.Burst), buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket. When there is none it returns
// false and how long until there is.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// prune drops the buckets that have refilled, which are as good as new; if
// that is not enough, it drops a tenth of the rest, chosen at random by the
// map's order, rather than refuse new clients.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxBuckets*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// retryAfter is the value of a Retry-After header for a wait: whole
// seconds, at least one.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
