package mailstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
)

// Test options (testOptions): MaxFailures 3, MaxAddressFailures 6,
// MaxLoginDelay 10 minutes.

// step is one login attempt of a throttle scenario, made after advancing
// the clock by advance.
type step struct {
	advance time.Duration
	account string
	remote  string
	right   bool          // the right password
	want    error         // nil, ErrAuthFailed or ErrRateLimited
	retry   time.Duration // with ErrRateLimited, the RetryAfter wanted (0: any)
}

// repeat returns n copies of s.
func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// doubling returns n copies of s, advancing the clock by first, then
// twice that, and so on.
func doubling(first time.Duration, n int, s step) []step {
	out := repeat(n, s)
	for i := range out {
		out[i].advance = first << i
	}
	return out
}

func join(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

const (
	mario = "mario@example.it"
	anna  = "anna@example.it"
	hostA = "203.0.113.9"
	hostB = "198.51.100.1"
)

func TestThrottle(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"a spray from A does not refuse the titolare at B", join(
			repeat(3, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			repeat(50, step{account: mario, remote: hostA, want: ErrRateLimited, retry: time.Second}),
			[]step{
				{account: mario, remote: hostB, right: true, want: nil},
				{account: mario, remote: hostB + ":51234", right: true, want: nil},
				// At A, even the right password waits for the delay.
				{account: mario, remote: hostA, right: true, want: ErrRateLimited},
				{advance: time.Second, account: mario, remote: hostA, right: true, want: nil},
			})},
		{"delays double up to MaxLoginDelay", join(
			repeat(3, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{
				{account: mario, remote: hostA, want: ErrRateLimited, retry: time.Second},
				{advance: time.Second, account: mario, remote: hostA, want: ErrAuthFailed},
				{account: mario, remote: hostA, want: ErrRateLimited, retry: 2 * time.Second},
				{advance: 2 * time.Second, account: mario, remote: hostA, want: ErrAuthFailed},
				{account: mario, remote: hostA, want: ErrRateLimited, retry: 4 * time.Second},
				{advance: 3 * time.Second, account: mario, remote: hostA, want: ErrRateLimited, retry: time.Second},
				{advance: time.Second, account: mario, remote: hostA, want: ErrAuthFailed},
			},
			// Each attempt as soon as allowed: 8s, 16s, … then the cap. The
			// address has failed as often: its own delays hold anna too.
			doubling(8*time.Second, 7, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{
				{account: mario, remote: hostA, want: ErrRateLimited, retry: 10 * time.Minute},
				{account: anna, remote: hostA, right: true, want: ErrRateLimited},
				{account: mario, remote: hostB, right: true, want: nil},
			})},
		{"an address spraying many accounts is slowed for all", join(
			[]step{
				{account: "a1@example.it", remote: hostA, want: ErrAuthFailed},
				{account: "a2@example.it", remote: hostA, want: ErrAuthFailed},
				{account: "a3@example.it", remote: hostA, want: ErrAuthFailed},
				{account: "a4@example.it", remote: hostA, want: ErrAuthFailed},
				{account: "not an address", remote: hostA, want: ErrAuthFailed},
				{account: anna, remote: hostA, want: ErrAuthFailed},
				{account: "a7@example.it", remote: hostA, want: ErrRateLimited, retry: time.Second},
				{account: mario, remote: hostA, right: true, want: ErrRateLimited},
				{account: anna, remote: hostA, right: true, want: ErrRateLimited},
				// Other addresses are not held back.
				{account: mario, remote: hostB, right: true, want: nil},
				{account: anna, remote: "2001:db8::1", right: true, want: nil},
				{advance: time.Second, account: mario, remote: hostA, right: true, want: nil},
			})},
		{"an IPv6 client is throttled by its /64", join(
			repeat(3, step{account: mario, remote: "2001:db8:1:2::1", want: ErrAuthFailed}),
			[]step{
				{account: mario, remote: "[2001:db8:1:2:ffff::7]:993", right: true, want: ErrRateLimited},
				{account: mario, remote: "2001:db8:1:3::1", right: true, want: nil},
				{account: mario, remote: "::ffff:" + hostA, right: true, want: nil},
			})},
		{"a success clears the pair, not the address", join(
			repeat(2, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{{account: mario, remote: hostA, right: true, want: nil}},
			repeat(2, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{{account: mario, remote: hostA, right: true, want: nil}},
			repeat(2, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{{account: mario, remote: hostA, right: true, want: ErrRateLimited}},
		)},
		{"failures are forgotten", join(
			repeat(3, step{account: mario, remote: hostA, want: ErrAuthFailed}),
			[]step{
				{account: mario, remote: hostA, right: true, want: ErrRateLimited},
				// One forgotten per MaxLoginDelay: two left, no delay.
				{advance: 10 * time.Minute, account: mario, remote: hostA, want: ErrAuthFailed},
				{account: mario, remote: hostA, right: true, want: ErrRateLimited},
				{advance: 30 * time.Minute, account: mario, remote: hostA, right: true, want: nil},
			})},
		{"no remote shares one entry", join(
			repeat(3, step{account: mario, remote: "", want: ErrAuthFailed}),
			[]step{
				{account: mario, remote: "not-an-ip", right: true, want: ErrRateLimited},
				{account: mario, remote: hostB, right: true, want: nil},
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, _ := openTest(t)
			mustAdd(t, s, mario, 0)
			mustAdd(t, s, anna, 0)
			for i, st := range tt.steps {
				c.Add(st.advance)
				pw := "wrong"
				if st.right {
					pw = "secret-" + st.account
				}
				err := s.Login(context.Background(), LoginAttempt{Service: ServiceIMAP, Address: st.account, Password: pw, Remote: st.remote})
				if (st.want == nil) != (err == nil) || (st.want != nil && !errors.Is(err, st.want)) {
					t.Fatalf("step %d (%s from %q, right %v): %v, want %v", i, st.account, st.remote, st.right, err, st.want)
				}
				var te *ThrottledError
				if errors.Is(err, ErrRateLimited) {
					if !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > 10*time.Minute {
						t.Fatalf("step %d: %v, want a *ThrottledError with a RetryAfter", i, err)
					}
					if st.retry != 0 && te.RetryAfter != st.retry {
						t.Fatalf("step %d: RetryAfter %v, want %v", i, te.RetryAfter, st.retry)
					}
				}
			}
		})
	}
}

func TestThrottleSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	s, c, dir := openTest(t)
	mustAdd(t, s, mario, 0)
	for range 3 {
		if err := s.Authenticate(ctx, mario, "wrong", hostA); !errors.Is(err, ErrAuthFailed) {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := s.Authenticate(ctx, fmt.Sprintf("x%d@example.it", i), "wrong", "2001:db8::5"); !errors.Is(err, ErrAuthFailed) {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, testOptions(dir, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Authenticate(ctx, mario, "secret-"+mario, hostA); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after a restart, from the address that failed: %v, want ErrRateLimited", err)
	}
	if err := s.Authenticate(ctx, mario, "secret-"+mario, hostB); err != nil {
		t.Fatalf("after a restart, from another address: %v", err)
	}
	// The address count (3 of 6) came back too: 3 more and it is slowed.
	for i := range 3 {
		if err := s.Authenticate(ctx, fmt.Sprintf("y%d@example.it", i), "wrong", "2001:db8::6"); !errors.Is(err, ErrAuthFailed) {
			t.Fatal(err)
		}
	}
	if err := s.Authenticate(ctx, mario, "secret-"+mario, "2001:db8::7"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after a restart, the /64 that failed 6 times: %v, want ErrRateLimited", err)
	}
	c.Add(time.Second)
	if err := s.Authenticate(ctx, mario, "secret-"+mario, hostA); err != nil {
		t.Fatalf("after the delay: %v", err)
	}
}

func TestThrottleConcurrent(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		right     bool
		n         int
		wantOK    int
		wantCheck int // password checks that failed
	}{
		// A mail client opening many connections at once is not limited.
		{"right password", true, 12, 12, 0},
		// Parallel guesses get no more tries than serial ones.
		{"wrong password", false, 20, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := openTest(t)
			mustAdd(t, s, mario, 0)
			pw := "wrong"
			if tt.right {
				pw = "secret-" + mario
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, failed := 0, 0
			for range tt.n {
				wg.Go(func() {
					err := s.Authenticate(ctx, mario, pw, hostA)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrAuthFailed):
						failed++
					case !errors.Is(err, ErrRateLimited):
						t.Errorf("unexpected %v", err)
					}
				})
			}
			wg.Wait()
			if ok != tt.wantOK || failed != tt.wantCheck {
				t.Fatalf("%d logged in, %d passwords checked and wrong; want %d and %d", ok, failed, tt.wantOK, tt.wantCheck)
			}
		})
	}
}

func TestRemoteKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"192.0.2.7:25", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:993", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:443", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"", "unknown"},
		{"host.example:25", "unknown"},
		{"garbage", "unknown"},
	}
	for _, tt := range tests {
		if got := RemoteKey(tt.in); got != tt.want {
			t.Errorf("RemoteKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// recorder is a Recorder that validates and keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []ledger.Event
	fail   bool
}

func (r *recorder) Append(_ context.Context, events ...ledger.Event) ([]uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return nil, errors.New("ledger unavailable")
	}
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	r.events = append(r.events, events...)
	return make([]uint64, len(events)), nil
}

func (r *recorder) take() []ledger.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// counts sums the failed and throttled counts of login-failures events.
func counts(t *testing.T, events []ledger.Event) (failed, throttled int) {
	t.Helper()
	for _, e := range events {
		if e.Kind != ledger.KindLoginFailures {
			t.Fatalf("kind %q", e.Kind)
		}
		f, _ := strconv.Atoi(e.Details[ledger.DetailLoginFailed])
		th, _ := strconv.Atoi(e.Details[ledger.DetailLoginThrottled])
		failed += f
		throttled += th
	}
	return failed, throttled
}

func openRecorded(t *testing.T) (*Store, *clock, *recorder) {
	t.Helper()
	return openRecordedWith(t, nil)
}

// openRecordedWith is openRecorded with the options changed by adjust,
// if not nil.
func openRecordedWith(t *testing.T, adjust func(*Options)) (*Store, *clock, *recorder) {
	t.Helper()
	c := newClock()
	rec := &recorder{}
	opts := testOptions(t.TempDir(), c)
	opts.Ledger = rec
	if adjust != nil {
		adjust(&opts)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustAdd(t, s, mario, 0)
	return s, c, rec
}

func TestLoginFailuresRecorded(t *testing.T) {
	ctx := context.Background()
	t.Run("aggregated per account, address and window", func(t *testing.T) {
		s, c, rec := openRecorded(t)
		// 500 attempts from A on mario, over less than a window: 3 failed,
		// the rest refused unchecked; 2 failures from B, then a success.
		for range 500 {
			s.Login(ctx, LoginAttempt{Service: ServiceSMTP, Address: mario, Password: "wrong", Remote: hostA})
		}
		for range 2 {
			s.Login(ctx, LoginAttempt{Service: ServiceIMAP, Address: mario, Password: "wrong", Remote: hostB})
		}
		if err := s.Login(ctx, LoginAttempt{Service: ServiceAPI, Address: mario, Password: "secret-" + mario, Remote: hostB}); err != nil {
			t.Fatal(err)
		}
		s.RecordFailedLogin(ServiceAPI, "", hostB+":443", false)
		s.flushLogins(false)
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("%d events before the window closed", len(got))
		}
		c.Add(LoginRecordWindow)
		s.flushLogins(false)
		got := rec.take()
		if len(got) != 3 {
			t.Fatalf("%d events, want 3 (A/mario, B/mario, B/token): %v", len(got), got)
		}
		if f, th := counts(t, got); f != 6 || th != 497 {
			t.Fatalf("failed %d, throttled %d; want 6 and 497", f, th)
		}
		byRemote := map[string]ledger.Event{}
		for _, e := range got {
			byRemote[e.Details[ledger.DetailLoginRemote]+" "+e.Details[ledger.DetailLoginAccount]] = e
		}
		a := byRemote[hostA+" "+mario]
		if a.Details[ledger.DetailLoginFailed] != "3" || a.Details[ledger.DetailLoginThrottled] != "497" || a.Details[ledger.DetailLoginServices] != "smtp" {
			t.Fatalf("event of A: %v", a.Details)
		}
		if b := byRemote[hostB+" "+mario]; b.Details[ledger.DetailLoginFailed] != "2" || b.Details[ledger.DetailLoginThrottled] != "" || b.Details[ledger.DetailLoginServices] != "imap" {
			t.Fatalf("event of B: %v", b.Details)
		}
		if b := byRemote[hostB+" "]; b.Details[ledger.DetailLoginFailed] != "1" || b.Details[ledger.DetailLoginServices] != "api" {
			t.Fatalf("event of the bad token: %v", b.Details)
		}
	})
	t.Run("bounded per window", func(t *testing.T) {
		// 1,500 logins, each checked against a (dummy) hash: one PBKDF2
		// iteration, since the hashing is not what this counts.
		s, c, rec := openRecordedWith(t, func(o *Options) { o.PasswordIterations = 1 })
		const n = MaxLoginRecords + 500
		for i := range n {
			// Distinct accounts and addresses: every one is checked.
			s.Login(ctx, LoginAttempt{Service: ServiceSMTP, Address: fmt.Sprintf("u%d@example.it", i), Password: "x", Remote: fmt.Sprintf("10.0.%d.%d", i/250, i%250)})
		}
		c.Add(LoginRecordWindow)
		// A failure in the next window closes the previous one.
		s.Login(ctx, LoginAttempt{Address: mario, Password: "x", Remote: hostA})
		s.flushLogins(false)
		got := rec.take()
		if len(got) != MaxLoginRecords+1 {
			t.Fatalf("%d events for %d pairs, want %d", len(got), n, MaxLoginRecords+1)
		}
		if f, th := counts(t, got); f+th != n {
			t.Fatalf("%d attempts counted, want %d", f+th, n)
		}
		overflow := 0
		for _, e := range got {
			if e.Details[ledger.DetailLoginAccount] == "*" && e.Details[ledger.DetailLoginRemote] == "*" {
				overflow++
				if e.Details[ledger.DetailLoginFailed] != "500" {
					t.Errorf("overflow event: %v", e.Details)
				}
			}
		}
		if overflow != 1 {
			t.Fatalf("%d overflow events, want 1", overflow)
		}
		// Close flushes the open window.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); len(got) != 1 || got[0].Details[ledger.DetailLoginAccount] != mario {
			t.Fatalf("at Close: %v", got)
		}
	})
	t.Run("kept while the ledger refuses", func(t *testing.T) {
		s, c, rec := openRecorded(t)
		rec.mu.Lock()
		rec.fail = true
		rec.mu.Unlock()
		s.Login(ctx, LoginAttempt{Address: mario, Password: "x", Remote: hostA})
		c.Add(LoginRecordWindow)
		s.flushLogins(false)
		rec.mu.Lock()
		rec.fail = false
		rec.mu.Unlock()
		s.flushLogins(false)
		if got := rec.take(); len(got) != 1 {
			t.Fatalf("%d events after the ledger came back, want 1", len(got))
		}
	})
}

func TestThrottleBounded(t *testing.T) {
	var th throttle
	th.init(3, 6, time.Second, time.Hour)
	c := newClock()
	ctx := context.Background()
	for i := range maxPenalties {
		remote := fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)
		keys := [2]string{pairKey(fmt.Sprintf("u%d@example.it", i), remote), addrKey(remote)}
		if err := th.begin(ctx, c.Now, keys); err != nil {
			t.Fatal(err)
		}
		th.end(c.Now(), keys, false, true)
		if len(th.m) > maxPenalties+2 {
			t.Fatalf("%d entries after %d failures, more than %d", len(th.m), i+1, maxPenalties)
		}
	}
	// A fresh failure is still counted after the evictions.
	keys := [2]string{pairKey(mario, hostA), addrKey(hostA)}
	for range 3 {
		if err := th.begin(ctx, c.Now, keys); err != nil {
			t.Fatal(err)
		}
		th.end(c.Now(), keys, false, true)
	}
	if err := th.begin(ctx, c.Now, keys); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after 3 failures: %v, want ErrRateLimited", err)
	}
}
