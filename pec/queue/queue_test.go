package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects what a test's Queue logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testQueue is a Queue under test, with its log.
type testQueue struct {
	*Queue
	log  *logBuffer
	opts Options
}

// openTest opens a queue in dir with small timings, closing it at the end
// of the test. Fields of opts that are set are kept.
func openTest(t *testing.T, dir string, opts Options) *testQueue {
	t.Helper()
	lb := &logBuffer{}
	opts.Dir = dir
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Poll == 0 {
		opts.Poll = 2 * time.Millisecond
	}
	q, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("queue log:\n%s", lb)
		}
	})
	return &testQueue{Queue: q, log: lb, opts: opts}
}

// run runs q.Run with deliver until the end of the test, or until the
// returned function is called.
func (q *testQueue) run(t *testing.T, deliver func(context.Context, Item) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx, deliver) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// item returns a valid item.
func item(id, destination string, size int) Item {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte('a' + (i+len(id))%26)
	}
	return Item{
		ID:          id,
		Destination: destination,
		Ref:         "opec.20261123." + id,
		From:        "posta-certificata@pec.a.example",
		To:          []string{"mario.rossi@pec.b.example", "anna.bianchi@pec.b.example"},
		Message:     msg,
	}
}

// waitFor waits until cond is true, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed bound
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// itemsByID returns q's items by ID.
func itemsByID(t *testing.T, q *testQueue) map[string]Item {
	t.Helper()
	items, err := q.Items(t.Context())
	if err != nil {
		t.Fatalf("Items: %v", err)
	}
	m := map[string]Item{}
	for _, it := range items {
		m[it.ID] = it
	}
	return m
}

// files returns the names in dir/sub.
func files(t *testing.T, dir, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestEnqueueInvalid(t *testing.T) {
	valid := item("ok", "b.example", 10)
	with := func(f func(*Item)) Item {
		it := item("x", "b.example", 10)
		f(&it)
		return it
	}
	tests := []struct {
		name    string
		items   []Item
		wantErr string
		is      error
	}{
		{"empty ID", []Item{with(func(it *Item) { it.ID = "" })}, "ID of 0 bytes", nil},
		{"long ID", []Item{with(func(it *Item) { it.ID = strings.Repeat("a", 201) })}, "ID of 201 bytes", nil},
		{"ID with a space", []Item{with(func(it *Item) { it.ID = "a b" })}, `character ' '`, nil},
		{"ID with %", []Item{with(func(it *Item) { it.ID = "a%b" })}, `character '%'`, nil},
		{"ID with ..", []Item{with(func(it *Item) { it.ID = "a/../b" })}, `ID has ".."`, nil},
		{"ID not ASCII", []Item{with(func(it *Item) { it.ID = "città" })}, "character", nil},
		{"no destination", []Item{with(func(it *Item) { it.Destination = "" })}, "no destination", nil},
		{"destination with space", []Item{with(func(it *Item) { it.Destination = "b example" })}, "has spaces", nil},
		{"from with CRLF", []Item{with(func(it *Item) { it.From = "a@b\r\nRCPT TO:<x>" })}, "control characters", nil},
		{"no recipients", []Item{with(func(it *Item) { it.To = nil })}, "no recipients", nil},
		{"empty recipient", []Item{with(func(it *Item) { it.To = []string{"a@b", ""} })}, "empty recipient", nil},
		{"recipient not UTF-8", []Item{with(func(it *Item) { it.To = []string{"\xff@b"} })}, "not UTF-8", nil},
		{"ref too long", []Item{with(func(it *Item) { it.Ref = strings.Repeat("r", 999) })}, "ref of 999 bytes", nil},
		{"empty message", []Item{with(func(it *Item) { it.Message = nil })}, "empty message", nil},
		{"valid then invalid", []Item{valid, with(func(it *Item) { it.To = nil })}, "no recipients", nil},
		{"same ID twice", []Item{valid, valid}, "", ErrExists},
		{"existing ID", []Item{item("new", "b.example", 5), item("exists", "b.example", 5)}, "enqueue exists", ErrExists},
	}
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if err := q.Enqueue(t.Context(), item("exists", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := q.Enqueue(t.Context(), tt.items...)
			if err == nil {
				t.Fatal("Enqueue succeeded")
			}
			if !strings.HasPrefix(err.Error(), "queue: enqueue ") {
				t.Errorf("error %q lacks its context", err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			// Nothing of a failed call is kept.
			if n := q.Len(); n != 1 {
				t.Errorf("Len = %d after a failed Enqueue, want 1", n)
			}
			if got := files(t, dir, "items"); len(got) != 1 {
				t.Errorf("files after a failed Enqueue: %v", got)
			}
		})
	}
}

func TestEnqueueCancelled(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := q.Enqueue(ctx, item("c1", "b.example", 5), item("c2", "b.example", 5))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with a cancelled context: %v", err)
	}
	if q.Len() != 0 || len(files(t, dir, "items")) != 0 || len(files(t, dir, "tmp")) != 0 {
		t.Fatalf("a cancelled Enqueue left items or files")
	}
	// The IDs are free again.
	if err := q.Enqueue(t.Context(), item("c1", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
}

func TestFileNames(t *testing.T) {
	ids := []string{
		"a",
		".",
		"-a",
		"busta/0123456789abcdef@pec.a.example/b.example",
		"x.item",
		"x.state",
		"a=b+c_d@e.f",
		strings.Repeat("/", 3) + "x",
		strings.Repeat("z", MaxIDLength),
	}
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	for _, id := range ids {
		name := fileName(id, itemSuffix)
		if strings.Contains(name, "/") {
			t.Errorf("fileName(%q) = %q", id, name)
		}
		back, suffix, ok := idOf(name)
		if !ok || back != id || suffix != itemSuffix {
			t.Errorf("idOf(%q) = %q, %q, %v; want %q", name, back, suffix, ok, id)
		}
		if err := q.Enqueue(t.Context(), item(id, "b.example", 3)); err != nil {
			t.Errorf("Enqueue(%q): %v", id, err)
		}
	}
	q.Close()
	q = openTest(t, dir, Options{})
	got := slices.Sorted(maps.Keys(itemsByID(t, q)))
	if want := slices.Sorted(slices.Values(ids)); !slices.Equal(got, want) {
		t.Errorf("after reopening: %q, want %q", got, want)
	}
	if q.quarantined != 0 {
		t.Errorf("%d files quarantined", q.quarantined)
	}
}

func TestRunDelivers(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	q := openTest(t, dir, Options{Now: clock.Now, Workers: 1})
	in := []Item{item("m1", "b.example", 10), item("m2", "local", 20000), item("m3", "c.example", 1)}
	if err := q.Enqueue(t.Context(), in[0]); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := q.Enqueue(t.Context(), in[1:]...); err != nil {
		t.Fatal(err)
	}
	if n := q.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	var mu sync.Mutex
	var got []Item
	q.run(t, func(ctx context.Context, it Item) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, it)
		return nil
	})
	// Len drops as a removal starts; the files go before it ends.
	waitFor(t, "deliveries", func() bool { return q.Len() == 0 && len(files(t, dir, "items")) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	for i, it := range got {
		want := in[i]
		if it.ID != want.ID || it.Destination != want.Destination || it.Ref != want.Ref || it.From != want.From ||
			!slices.Equal(it.To, want.To) || !bytes.Equal(it.Message, want.Message) || it.Attempts != 0 {
			t.Errorf("delivery %d: %+v, want %+v", i, it, want)
		}
	}
	if want := clock.Now().Add(-time.Second); !got[0].Enqueued.Equal(want) {
		t.Errorf("Enqueued = %v, want %v", got[0].Enqueued, want)
	}
	if f := files(t, dir, "items"); len(f) != 0 {
		t.Errorf("files left after delivery: %v", f)
	}
}

func TestRetryBackoff(t *testing.T) {
	const minB, maxB = time.Minute, 4 * time.Minute
	clock := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: minB, MaxBackoff: maxB})
	var calls atomic.Int32
	q.run(t, func(ctx context.Context, it Item) error {
		if n := calls.Add(1); n <= 5 {
			return fmt.Errorf("451 try %d later", n)
		}
		return nil
	})
	if err := q.Enqueue(t.Context(), item("r", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	// After failure n the item waits min(MinBackoff·2^(n-1), MaxBackoff).
	waits := []time.Duration{minB, 2 * minB, 4 * minB, maxB, maxB}
	for i, wait := range waits {
		n := i + 1
		waitFor(t, fmt.Sprintf("attempt %d", n), func() bool { return itemsByID(t, q)["r"].Attempts == n })
		it := itemsByID(t, q)["r"]
		if want := clock.Now().Add(wait); !it.NextAttempt.Equal(want) {
			t.Fatalf("after failure %d: NextAttempt %v, want now + %v", n, it.NextAttempt, wait)
		}
		if want := fmt.Sprintf("451 try %d later", n); it.LastError != want {
			t.Fatalf("after failure %d: LastError %q, want %q", n, it.LastError, want)
		}
		// Not before it is due.
		clock.Advance(wait - time.Second)
		time.Sleep(20 * time.Millisecond)
		if c := int(calls.Load()); c != n {
			t.Fatalf("%d attempts %v after failure %d, want %d", c, wait-time.Second, n, n)
		}
		clock.Advance(time.Second)
	}
	waitFor(t, "delivery", func() bool { return q.Len() == 0 })
	if c := calls.Load(); c != 6 {
		t.Fatalf("%d attempts, want 6", c)
	}
}

// TestRetryAfterClockGoesBack: times reckoned by a clock two hours ahead
// are not waited for once the clock is set right, whether the item failed
// once (no backoff is longer than MaxBackoff) or was enqueued and never
// tried (it is due at once).
func TestRetryAfterClockGoesBack(t *testing.T) {
	const minB, maxB = time.Minute, 4 * time.Minute
	for _, failFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("failed first %v", failFirst), func(t *testing.T) {
			clock := newClock()
			q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: minB, MaxBackoff: maxB})
			var calls atomic.Int32
			deliver := func(ctx context.Context, it Item) error {
				if calls.Add(1) == 1 && failFirst {
					return fmt.Errorf("451 try later")
				}
				return nil
			}
			clock.Advance(2 * time.Hour) // the clock jumps ahead
			if err := q.Enqueue(t.Context(), item("r", "b.example", 10)); err != nil {
				t.Fatal(err)
			}
			if failFirst {
				q.run(t, deliver)
				waitFor(t, "the first attempt", func() bool { return itemsByID(t, q)["r"].Attempts == 1 })
				clock.Advance(-2 * time.Hour) // and is set right
				q.Kick()
			} else {
				clock.Advance(-2 * time.Hour) // set right before any attempt
				q.run(t, deliver)
			}
			waitFor(t, "delivery", func() bool { return q.Len() == 0 })
		})
	}
}

// TestDestinationBackoff checks that the failures of one destination hold
// back its items only, one probe at a time, and that a success releases
// them all.
func TestDestinationBackoff(t *testing.T) {
	const minB = time.Minute
	clock := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: minB, MaxBackoff: time.Hour, Workers: 4})
	var (
		mu                     sync.Mutex
		down                   = true
		inflightA, maxInflight int
		attemptsA              int
		delivered              []string
	)
	q.run(t, func(ctx context.Context, it Item) error {
		mu.Lock()
		if it.Destination != "a.example" {
			delivered = append(delivered, it.ID)
			mu.Unlock()
			return nil
		}
		inflightA++
		attemptsA++
		if !down {
			maxInflight = 0 // only failing rounds count
		}
		maxInflight = max(maxInflight, inflightA)
		isDown := down
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // let other attempts overlap, if any
		mu.Lock()
		defer mu.Unlock()
		inflightA--
		if isDown {
			return &DestinationError{Err: errors.New("connection refused")}
		}
		delivered = append(delivered, it.ID)
		return nil
	})
	snapshot := func() (int, int, []string) {
		mu.Lock()
		defer mu.Unlock()
		return attemptsA, maxInflight, slices.Clone(delivered)
	}
	start := clock.Now()
	if err := q.Enqueue(t.Context(), item("a1", "a.example", 5), item("a2", "a.example", 5),
		item("a3", "a.example", 5), item("b1", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
	// A healthy destination: all three tried at once, and all fail; b1 is
	// delivered.
	waitFor(t, "first round", func() bool {
		its := itemsByID(t, q)
		return its["a1"].Attempts == 1 && its["a2"].Attempts == 1 && its["a3"].Attempts == 1
	})
	if _, _, d := snapshot(); !slices.Equal(d, []string{"b1"}) {
		t.Fatalf("delivered %v, want [b1]", d)
	}
	// One round of failures: one backoff, not three.
	for id, it := range itemsByID(t, q) {
		if want := start.Add(minB); !it.NextAttempt.Equal(want) {
			t.Errorf("%s: NextAttempt %v, want %v", id, it.NextAttempt, want)
		}
	}
	mu.Lock()
	maxInflight = 0
	mu.Unlock()
	// Failing: one probe per backoff.
	for round, wait := range []time.Duration{minB, 2 * minB, 4 * minB} {
		before, _, _ := snapshot()
		clock.Advance(wait)
		waitFor(t, "a probe", func() bool { n, _, _ := snapshot(); return n == before+1 })
		time.Sleep(30 * time.Millisecond)
		if n, maxIn, _ := snapshot(); n != before+1 || maxIn != 1 {
			t.Fatalf("round %d: %d attempts, %d at once; want 1 probe", round, n-before, maxIn)
		}
	}
	// Back up: the next probe succeeds and the rest follow at once.
	mu.Lock()
	down = false
	mu.Unlock()
	clock.Advance(8 * minB)
	waitFor(t, "all delivered", func() bool { return q.Len() == 0 })
	if _, _, d := snapshot(); len(d) != 4 {
		t.Fatalf("delivered %v", d)
	}
}

// TestProbeFewestAttempts checks that the probe of a failing destination
// is not an item that keeps failing on its own.
func TestProbeFewestAttempts(t *testing.T) {
	clock := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: time.Minute, Workers: 1})
	var mu sync.Mutex
	var tried []string
	q.run(t, func(ctx context.Context, it Item) error {
		mu.Lock()
		defer mu.Unlock()
		tried = append(tried, it.ID)
		if it.ID == "poison" {
			return errors.New("452 mailbox full")
		}
		return nil
	})
	if err := q.Enqueue(t.Context(), item("poison", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first failure", func() bool { return itemsByID(t, q)["poison"].Attempts == 1 })
	clock.Advance(time.Second)
	if err := q.Enqueue(t.Context(), item("fresh", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the destination is backing off
	clock.Advance(time.Minute)
	waitFor(t, "fresh delivered", func() bool { return q.Len() == 1 })
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"poison", "fresh"}; !slices.Equal(tried[:2], want) {
		t.Fatalf("tried %v, want %v first", tried, want)
	}
}

func TestKickDestination(t *testing.T) {
	clock := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	var fail atomic.Bool
	fail.Store(true)
	q.run(t, func(ctx context.Context, it Item) error {
		if fail.Load() {
			return errors.New("down")
		}
		return nil
	})
	if err := q.Enqueue(t.Context(), item("k1", "b.example", 5), item("k2", "c.example", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failures", func() bool {
		its := itemsByID(t, q)
		return its["k1"].Attempts == 1 && its["k2"].Attempts == 1
	})
	fail.Store(false)
	q.Kick() // changes nothing: not due
	time.Sleep(20 * time.Millisecond)
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d after Kick, want 2", n)
	}
	q.KickDestination("b.example")
	waitFor(t, "k1 delivered", func() bool { return q.Len() == 1 })
	if _, ok := itemsByID(t, q)["k2"]; !ok {
		t.Fatal("k2 was delivered too")
	}
}

func TestPermanentError(t *testing.T) {
	tests := []struct {
		name         string
		onPermanent  bool
		failOnPerm   int // OnPermanent fails this many times first
		wantAttempts int // of the item handed to the last OnPermanent
	}{
		{name: "no OnPermanent"},
		{name: "OnPermanent", onPermanent: true},
		{name: "OnPermanent fails once", onPermanent: true, failOnPerm: 1, wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			dir := t.TempDir()
			var (
				mu    sync.Mutex
				perms []Item
				errs  []error
			)
			opts := Options{Now: clock.Now, MinBackoff: time.Minute}
			if tt.onPermanent {
				opts.OnPermanent = func(ctx context.Context, it Item, err error) error {
					mu.Lock()
					defer mu.Unlock()
					perms = append(perms, it)
					errs = append(errs, err)
					if len(perms) <= tt.failOnPerm {
						return errors.New("disk full")
					}
					return nil
				}
			}
			q := openTest(t, dir, opts)
			want := item("p", "b.example", 100)
			if err := q.Enqueue(t.Context(), want); err != nil {
				t.Fatal(err)
			}
			var calls atomic.Int32
			q.run(t, func(ctx context.Context, it Item) error {
				calls.Add(1)
				return fmt.Errorf("sending: %w", &PermanentError{Err: errors.New("550 no such user")})
			})
			if tt.failOnPerm > 0 {
				waitFor(t, "a retry", func() bool { return itemsByID(t, q)["p"].Attempts == 1 })
				it := itemsByID(t, q)["p"]
				if !strings.Contains(it.LastError, "550 no such user") || !strings.Contains(it.LastError, "disk full") {
					t.Errorf("LastError %q", it.LastError)
				}
				clock.Advance(time.Minute)
			}
			waitFor(t, "removal", func() bool { return q.Len() == 0 && len(files(t, dir, "items")) == 0 })
			if f := files(t, dir, "items"); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
			if c := int(calls.Load()); c != tt.failOnPerm+1 {
				t.Errorf("%d delivery attempts, want %d", c, tt.failOnPerm+1)
			}
			if !tt.onPermanent {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			last := perms[len(perms)-1]
			if last.ID != want.ID || !bytes.Equal(last.Message, want.Message) || last.Attempts != tt.wantAttempts {
				t.Errorf("OnPermanent got %+v", last)
			}
			var pe *PermanentError
			if err := errs[len(errs)-1]; !errors.As(err, &pe) || err.Error() != "sending: 550 no such user" {
				t.Errorf("OnPermanent got error %v", err)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	q := openTest(t, dir, Options{Now: clock.Now, MinBackoff: time.Minute})
	want := []Item{item("o1", "b.example", 1000), item("o2", "c.example", 10)}
	if err := q.Enqueue(t.Context(), want...); err != nil {
		t.Fatal(err)
	}
	stop := q.run(t, func(ctx context.Context, it Item) error {
		return fmt.Errorf("421 %s busy", it.ID)
	})
	attempts := func(n int) func() bool {
		return func() bool {
			its := itemsByID(t, q)
			return its["o1"].Attempts == n && its["o2"].Attempts == n
		}
	}
	waitFor(t, "first failures", attempts(1))
	clock.Advance(time.Minute)
	waitFor(t, "second failures", attempts(2))
	stop()
	before := itemsByID(t, q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openTest(t, dir, Options{Now: clock.Now})
	after := itemsByID(t, q)
	if len(after) != 2 || q.Len() != 2 {
		t.Fatalf("after reopening: %d items", len(after))
	}
	for id, b := range before {
		a := after[id]
		if a.Attempts != b.Attempts || !a.NextAttempt.Equal(b.NextAttempt) || a.LastError != b.LastError ||
			!a.Enqueued.Equal(b.Enqueued) || !bytes.Equal(a.Message, b.Message) || !slices.Equal(a.To, b.To) ||
			a.Ref != b.Ref || a.From != b.From || a.Destination != b.Destination {
			t.Errorf("%s: before %+v\nafter %+v", id, b, a)
		}
	}
	if a := after["o1"]; a.Attempts != 2 || a.LastError != "421 o1 busy" {
		t.Errorf("o1 after reopening: %d attempts, LastError %q", a.Attempts, a.LastError)
	}
	if d := q.dests["b.example"]; d == nil || d.failures == 0 {
		t.Error("b.example is not in probe mode after reopening")
	}
}

// batchFiles returns the names of the batch files in dir/items.
func batchFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for _, name := range files(t, dir, "items") {
		if _, ok := seqOf(name); ok {
			names = append(names, name)
		}
	}
	return names
}

// onlyBatch returns the name of the one batch file in dir/items, and its
// records by ID.
func onlyBatch(t *testing.T, dir string) (string, map[string]record) {
	t.Helper()
	names := batchFiles(t, dir)
	if len(names) != 1 {
		t.Fatalf("batch files %v, want one", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, "items", names[0]))
	if err != nil {
		t.Fatal(err)
	}
	recs, damage := parseBatch(b, "")
	if len(damage) > 0 {
		t.Fatalf("%s is damaged: %v", names[0], damage)
	}
	m := map[string]record{}
	for _, r := range recs {
		m[r.it.ID] = r
	}
	return names[0], m
}

// edit replaces the content of the file path by what f returns.
func edit(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedFiles(t *testing.T) {
	const batch = "BATCH" // stands for the name of the batch file
	type target struct {
		items string            // the items directory of the closed queue
		batch string            // path of the batch file holding d1 and d2
		recs  map[string]record // its records
	}
	tests := []struct {
		name        string
		damage      func(t *testing.T, f target)
		wantItems   []string // IDs still queued
		wantDamaged []string // files in damaged/
		wantLog     string   // in the warning
	}{
		{"message byte flipped", func(t *testing.T, f target) {
			r := f.recs["d1"]
			flip(t, f.batch, int(r.off+r.n-10))
		}, []string{"d2"}, []string{batch}, "checksum mismatch"},
		{"last message byte flipped", func(t *testing.T, f target) {
			flip(t, f.batch, -1)
		}, []string{"d1"}, []string{batch}, "checksum mismatch"},
		{"header byte flipped", func(t *testing.T, f target) {
			flip(t, f.batch, int(f.recs["d1"].off)+100) // in the JSON
		}, []string{"d2"}, []string{batch}, "at offset 0: "},
		{"first line byte flipped", func(t *testing.T, f target) {
			flip(t, f.batch, int(f.recs["d2"].off)+3)
		}, []string{"d1"}, []string{batch}, "not a queue record"},
		{"truncated", func(t *testing.T, f target) {
			r := f.recs["d2"]
			if err := os.Truncate(f.batch, r.off+r.n/2); err != nil {
				t.Fatal(err)
			}
		}, []string{"d1"}, []string{batch}, "cut record"},
		{"empty", func(t *testing.T, f target) {
			if err := os.Truncate(f.batch, 0); err != nil {
				t.Fatal(err)
			}
		}, nil, []string{batch}, "empty file"},
		{"garbage between records", func(t *testing.T, f target) {
			edit(t, f.batch, func(b []byte) []byte {
				off := f.recs["d2"].off
				return slices.Concat(b[:off], []byte("garbage\n"+magic+" 12 34\n"), b[off:])
			})
		}, []string{"d1", "d2"}, []string{batch}, "at offset"},
		{"stray file", func(t *testing.T, f target) {
			if err := os.WriteFile(filepath.Join(f.items, "notes.txt"), []byte("hi"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"d1", "d2"}, []string{"notes.txt"}, "not a file of the queue"},
		{"stray done file", func(t *testing.T, f target) {
			if err := os.WriteFile(filepath.Join(f.items, "notes.done"), []byte("hi"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"d1", "d2"}, []string{"notes.done"}, "not a file of the queue"},
		{"damaged state file", func(t *testing.T, f target) {
			if err := os.WriteFile(filepath.Join(f.items, "d1.state"), []byte(`{"id":"d1","attem`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"d1", "d2"}, nil, "ignoring a damaged state file"},
		{"damaged done marks", func(t *testing.T, f target) {
			line := markLine(markDone, "d1")
			line[len(line)-3] ^= 1
			b := slices.Concat(line, []byte("X d2 00000000\n"), markLine(markDone, "d2")[:5])
			if err := os.WriteFile(f.batch+doneSuffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"d1", "d2"}, nil, "ignoring damaged done marks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q := openTest(t, dir, Options{})
			want := []Item{item("d1", "b.example", 500), item("d2", "b.example", 500)}
			if err := q.Enqueue(t.Context(), want...); err != nil {
				t.Fatal(err)
			}
			q.Close()
			name, recs := onlyBatch(t, dir)
			items := filepath.Join(dir, "items")
			tt.damage(t, target{items: items, batch: filepath.Join(items, name), recs: recs})

			q = openTest(t, dir, Options{})
			got := itemsByID(t, q)
			if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, tt.wantItems) || q.Len() != len(tt.wantItems) {
				t.Errorf("items %v (Len %d), want %v", ids, q.Len(), tt.wantItems)
			}
			for _, w := range want {
				if g, ok := got[w.ID]; ok && (!bytes.Equal(g.Message, w.Message) || !slices.Equal(g.To, w.To)) {
					t.Errorf("%s changed: %+v", w.ID, g)
				}
			}
			wantDamaged := slices.Clone(tt.wantDamaged)
			if i := slices.Index(wantDamaged, batch); i >= 0 {
				wantDamaged[i] = name
			}
			if d := files(t, dir, "damaged"); !slices.Equal(d, wantDamaged) {
				t.Errorf("damaged/ holds %v, want %v", d, wantDamaged)
			}
			log := q.log.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, tt.wantLog) {
				t.Errorf("no warning with %q:\n%s", tt.wantLog, log)
			}
			for _, name := range wantDamaged {
				if !strings.Contains(log, filepath.Join(dir, "items", name)) {
					t.Errorf("the warning does not name %s:\n%s", name, log)
				}
			}
			// What is left is sound: a third Open finds nothing wrong.
			q.Close()
			q = openTest(t, dir, Options{})
			if q.quarantined != 0 || q.Len() != len(tt.wantItems) {
				t.Errorf("reopened again: %d quarantined, Len %d", q.quarantined, q.Len())
			}
		})
	}
}

// flip inverts the byte of file path at offset off (from the end if
// negative).
func flip(t *testing.T, path string, off int) {
	t.Helper()
	edit(t, path, func(b []byte) []byte {
		if off < 0 {
			off += len(b)
		}
		b[off] ^= 0xff
		return b
	})
}

// TestDamagedAtDelivery checks that a record damaged while the queue is
// open is not delivered when its turn comes, and that its batch file is
// moved aside once the other items are done.
func TestDamagedAtDelivery(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if err := q.Enqueue(t.Context(), item("bad", "b.example", 100), item("good", "b.example", 100)); err != nil {
		t.Fatal(err)
	}
	name, recs := onlyBatch(t, dir)
	r := recs["bad"]
	flip(t, filepath.Join(dir, "items", name), int(r.off+r.n-1))
	var delivered sync.Map
	q.run(t, func(ctx context.Context, it Item) error {
		delivered.Store(it.ID, true)
		return nil
	})
	waitFor(t, "the queue to empty", func() bool { return q.Len() == 0 && len(files(t, dir, "items")) == 0 })
	if _, ok := delivered.Load("bad"); ok {
		t.Error("the damaged item was delivered")
	}
	if _, ok := delivered.Load("good"); !ok {
		t.Error("the good item was not delivered")
	}
	if d := files(t, dir, "damaged"); !slices.Equal(d, []string{name}) {
		t.Errorf("damaged/ holds %v, want [%s]", d, name)
	}
	if log := q.log.String(); !strings.Contains(log, "damaged record") || !strings.Contains(log, filepath.Join(dir, "items", name)) {
		t.Errorf("no warning naming %s:\n%s", name, log)
	}
}

func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if err := q.Enqueue(t.Context(), item("c1", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	name, _ := onlyBatch(t, dir)
	// A write interrupted before its rename, the state file of an item
	// whose removal was interrupted, the done file of a batch whose
	// deletion was, and a batch whose items are all done.
	for _, f := range []struct{ path, content string }{
		{"tmp/123.tmp", "custode-queue 1 partial"},
		{"items/gone.state", `{"id":"gone","attempts":3}`},
		{"items/" + batchName(1) + doneSuffix, string(markLine(markDone, "x"))},
		{"items/" + batchName(2), ""},
	} {
		if f.content == "" {
			q := openTest(t, t.TempDir(), Options{})
			if err := q.Enqueue(t.Context(), item("done", "b.example", 10)); err != nil {
				t.Fatal(err)
			}
			q.Close()
			b, err := os.ReadFile(filepath.Join(q.opts.Dir, "items", batchFiles(t, q.opts.Dir)[0]))
			if err != nil {
				t.Fatal(err)
			}
			f.content = string(b)
			if err := os.WriteFile(filepath.Join(dir, f.path+doneSuffix), markLine(markDone, "done"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f.path), []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q = openTest(t, dir, Options{})
	if f := files(t, dir, "tmp"); len(f) != 0 {
		t.Errorf("tmp/ holds %v", f)
	}
	if f := files(t, dir, "items"); !slices.Equal(f, []string{name}) {
		t.Errorf("items/ holds %v, want [%s]", f, name)
	}
	if q.Len() != 1 || q.orphaned != 2 || q.quarantined != 0 {
		t.Errorf("Len %d, orphaned %d, quarantined %d", q.Len(), q.orphaned, q.quarantined)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{MinBackoff: time.Hour})
	if err := q.Enqueue(t.Context(), item("r1", "b.example", 10), item("r2", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(t.Context(), "r1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v, want ErrNotFound", err)
	}
	// The same ID may come back.
	if err := q.Enqueue(t.Context(), item("r1", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	// Removed while it is being delivered, which then fails: no state file
	// is left behind and the item does not come back.
	started, release := make(chan struct{}), make(chan struct{})
	stop := q.run(t, func(ctx context.Context, it Item) error {
		close(started)
		<-release
		return errors.New("421 later")
	})
	<-started
	if err := q.Remove(t.Context(), "r2"); err != nil {
		t.Fatal(err)
	}
	close(release)
	stop() // waits for the delivery to end
	if q.Len() != 0 {
		t.Fatalf("Len = %d", q.Len())
	}
	if f := files(t, dir, "items"); len(f) != 0 {
		t.Errorf("items/ holds %v", f)
	}
}

func TestConcurrentEnqueue(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	const goroutines, perG = 16, 12
	var wg sync.WaitGroup
	var dups atomic.Int32
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				its := []Item{item(fmt.Sprintf("g%d/i%d", g, i), fmt.Sprintf("d%d.example", i%3), 2000)}
				if i%3 == 0 {
					// Every goroutine races for the same shared ID.
					its = append(its, item(fmt.Sprintf("g%d/i%d/b", g, i), "b.example", 10))
					if err := q.Enqueue(t.Context(), item(fmt.Sprintf("shared/%d", i), "b.example", 10)); errors.Is(err, ErrExists) {
						dups.Add(1)
					} else if err != nil {
						t.Error(err)
					}
				}
				if err := q.Enqueue(t.Context(), its...); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	shared := (perG + 2) / 3
	want := goroutines*perG + goroutines*shared + shared
	if got := int(dups.Load()); got != (goroutines-1)*shared {
		t.Errorf("%d duplicates refused, want %d", got, (goroutines-1)*shared)
	}
	if q.Len() != want {
		t.Fatalf("Len = %d, want %d", q.Len(), want)
	}
	q.Close()
	q = openTest(t, dir, Options{})
	items, err := q.Items(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != want {
		t.Fatalf("%d items after reopening, want %d", len(items), want)
	}
	if !slices.IsSortedFunc(items, func(a, b Item) int { return compareItems(&a, &b) }) {
		t.Error("Items not sorted by Enqueued and ID")
	}
}

func TestOpenAndClose(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if _, err := Open(t.Context(), Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "open elsewhere") {
		t.Fatalf("second Open: %v, want a lock error", err)
	}
	if _, err := Open(t.Context(), Options{}); err == nil {
		t.Fatal("Open with no Dir succeeded")
	}
	if _, err := Open(t.Context(), Options{Dir: t.TempDir(), MinBackoff: time.Hour, MaxBackoff: time.Minute}); err == nil {
		t.Fatal("Open with MaxBackoff < MinBackoff succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(t.Context(), Options{Dir: file}); err == nil || !strings.HasPrefix(err.Error(), "queue: open ") {
		t.Fatalf("Open on a file: %v", err)
	}

	ctx := t.Context()
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx, func(context.Context, Item) error { return nil }) }()
	waitFor(t, "Run", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.running })
	if err := q.Run(ctx, func(context.Context, Item) error { return nil }); err == nil {
		t.Error("a second Run succeeded")
	}
	if err := q.Run(ctx, nil); err == nil {
		t.Error("Run with no delivery function succeeded")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	if err := q.Enqueue(ctx, item("x", "b.example", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v", err)
	}
	if err := q.Remove(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Remove after Close: %v", err)
	}
	if _, err := q.Items(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Items after Close: %v", err)
	}
	// The directory is free again.
	openTest(t, dir, Options{})
}

func TestLastErrorCut(t *testing.T) {
	clock := newClock()
	q := openTest(t, t.TempDir(), Options{Now: clock.Now})
	long := strings.Repeat("è", 2000) // 4000 bytes, cut inside a rune
	q.run(t, func(ctx context.Context, it Item) error { return errors.New(long) })
	if err := q.Enqueue(t.Context(), item("e", "b.example", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failure", func() bool { return itemsByID(t, q)["e"].Attempts == 1 })
	got := itemsByID(t, q)["e"].LastError
	if len(got) > maxLastError || !utf8.ValidString(got) || !strings.HasPrefix(long, got) || len(got) < maxLastError-1 {
		t.Errorf("LastError of %d bytes: %q...", len(got), got[:min(len(got), 20)])
	}
}

func TestPermanentErrorMessage(t *testing.T) {
	tests := []struct {
		err  *PermanentError
		want string
	}{
		{&PermanentError{Err: errors.New("550 no")}, "550 no"},
		{&PermanentError{}, "permanent delivery failure"},
		{nil, "permanent delivery failure"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			q, err := Open(b.Context(), Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			msg := bytes.Repeat([]byte("0123456789"), 1024)
			items := make([]Item, batch)
			b.SetBytes(int64(batch * len(msg)))
			n := 0
			for b.Loop() {
				for j := range items {
					n++
					items[j] = Item{ID: fmt.Sprintf("bench/%d", n), Destination: "b.example",
						From: "a@pec.a.example", To: []string{"b@pec.b.example"}, Message: msg}
				}
				if err := q.Enqueue(b.Context(), items...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

// BenchmarkEnqueueConcurrent enqueues from 16 goroutines at once, 2 items
// of 10 KB per call, as the gestore does under load.
func BenchmarkEnqueueConcurrent(b *testing.B) {
	const writers, perCall = 16, 2
	q, err := Open(b.Context(), Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	msg := bytes.Repeat([]byte("0123456789"), 1024)
	b.SetBytes(int64(perCall * len(msg)))
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				items := make([]Item, perCall)
				for j := range items {
					items[j] = Item{ID: fmt.Sprintf("bench/%d/%d", n, j), Destination: "b.example",
						From: "a@pec.a.example", To: []string{"b@pec.b.example"}, Message: msg}
				}
				if err := q.Enqueue(b.Context(), items...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*perCall)/b.Elapsed().Seconds(), "items/s")
}
