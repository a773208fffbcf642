package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdCommitter makes q's committer wait, before it puts its next batch
// together, until the returned function is called.
func holdCommitter(q *testQueue) (release func()) {
	ch := make(chan struct{})
	q.commits.beforeTake = func() { <-ch }
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// waiting returns how many Enqueue calls wait for q's committer.
func waiting(q *testQueue) int {
	q.commits.mu.Lock()
	defer q.commits.mu.Unlock()
	return len(q.commits.waiting)
}

// batchesWritten returns how many batch files q has written.
func batchesWritten(q *testQueue) int {
	q.commits.mu.Lock()
	defer q.commits.mu.Unlock()
	return q.commits.batches
}

// TestGroupCommit checks that concurrent calls are written in one batch
// file, and that a call that fails, or whose context ends while it waits,
// does not affect the others.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	release := holdCommitter(q)
	defer release()

	const calls = 20
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			errs[i] = q.Enqueue(t.Context(), item(fmt.Sprintf("c%d/a", i), "b.example", 1000+i), item(fmt.Sprintf("c%d/b", i), "local", 10))
		})
	}
	waitFor(t, "the calls to wait", func() bool { return waiting(q) == calls })
	syncs := q.syncs.Load()

	// While they wait: a call naming an ID of another, one with an
	// invalid item, one whose context ends.
	if err := q.Enqueue(t.Context(), item("dup/new", "b.example", 10), item("c3/b", "b.example", 10)); !errors.Is(err, ErrExists) {
		t.Errorf("Enqueue of a waiting ID: %v, want ErrExists", err)
	}
	if err := q.Enqueue(t.Context(), item("bad/new", "b.example", 10), item("bad/x", "", 10)); err == nil {
		t.Error("Enqueue of an invalid item succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancelled := make(chan error)
	go func() { cancelled <- q.Enqueue(ctx, item("gone/1", "b.example", 10)) }()
	waitFor(t, "the call to wait", func() bool { return waiting(q) == calls+1 })
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue cancelled while waiting: %v", err)
	}
	if n := waiting(q); n != calls {
		t.Errorf("%d calls waiting after the cancellation, want %d", n, calls)
	}

	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if n := batchesWritten(q); n != 1 {
		t.Errorf("%d batch files written for %d calls, want 1", n, calls)
	}
	if n := q.syncs.Load() - syncs; n != 2 {
		t.Errorf("%d fsyncs for %d calls, want 2 (the batch file, the directory)", n, calls)
	}
	if f := batchFiles(t, dir); len(f) != 1 {
		t.Errorf("batch files %v, want one", f)
	}
	check := func(q *testQueue) {
		t.Helper()
		got := itemsByID(t, q)
		if len(got) != 2*calls {
			t.Errorf("%d items, want %d", len(got), 2*calls)
		}
		for _, id := range []string{"dup/new", "bad/new", "gone/1"} {
			if _, ok := got[id]; ok {
				t.Errorf("%s of a failed call is queued", id)
			}
		}
		for i := range calls {
			it := got[fmt.Sprintf("c%d/a", i)]
			if want := item(it.ID, "b.example", 1000+i); !bytes.Equal(it.Message, want.Message) {
				t.Errorf("%s: message of %d bytes, want %d", it.ID, len(it.Message), len(want.Message))
			}
		}
	}
	check(q)
	q.Close()
	check(openTest(t, dir, Options{}))
}

// TestConcurrentEnqueueBatches checks that calls from many goroutines
// share batch files without a hook holding the committer.
func TestConcurrentEnqueueBatches(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	const goroutines, perG = 16, 20
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				if err := q.Enqueue(t.Context(), item(fmt.Sprintf("g%d/%d/a", g, i), "b.example", 10<<10),
					item(fmt.Sprintf("g%d/%d/b", g, i), "local", 10<<10)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	n := batchesWritten(q)
	t.Logf("%d calls in %d batch files, %d fsyncs", goroutines*perG, n, q.syncs.Load())
	if n >= goroutines*perG {
		t.Errorf("%d batch files for %d concurrent calls: no group commit", n, goroutines*perG)
	}
	if got := len(batchFiles(t, dir)); got != n {
		t.Errorf("%d batch files in items/, %d written", got, n)
	}
	if q.Len() != 2*goroutines*perG {
		t.Errorf("Len = %d", q.Len())
	}
}

// keepDurableMarks rewrites the done files of dir as a power loss could
// leave them: with only the marks that were fsynced.
func keepDurableMarks(t *testing.T, dir string) {
	t.Helper()
	for _, name := range files(t, dir, "items") {
		if !strings.HasSuffix(name, doneSuffix) {
			continue
		}
		edit(t, filepath.Join(dir, "items", name), func(b []byte) []byte {
			var out []byte
			for line := range bytes.Lines(b) {
				if markKind(line[0]).durable() {
					out = append(out, line...)
				}
			}
			return out
		})
	}
}

// TestDoneMarks checks that items done are not delivered again after a
// clean Close and Open, that marks lost to a power loss only repeat
// deliveries, and what each step fsyncs.
func TestDoneMarks(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	q := openTest(t, dir, Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	ids := []string{"m/0", "m/1", "m/2", "m/3", "m/4", "m/5"}
	var items []Item
	for _, id := range ids {
		items = append(items, item(id, "d"+id[2:]+".example", 100))
	}
	if err := q.Enqueue(t.Context(), items...); err != nil {
		t.Fatal(err)
	}
	name, _ := onlyBatch(t, dir)
	var mu sync.Mutex
	delivered := map[string]int{}
	deliver := func(ctx context.Context, it Item) error {
		mu.Lock()
		defer mu.Unlock()
		delivered[it.ID]++
		switch it.ID {
		case "m/0", "m/1":
			return nil
		case "m/2":
			return &PermanentError{Err: errors.New("550 no")}
		}
		return errors.New("421 later") // m/3, m/4, m/5
	}
	syncs := q.syncs.Load()
	stop := q.run(t, deliver)
	waitFor(t, "the attempts", func() bool {
		its := itemsByID(t, q)
		return len(its) == 3 && its["m/3"].Attempts == 1 && its["m/4"].Attempts == 1 && its["m/5"].Attempts == 1
	})
	stop()
	// Three deliveries marked without an fsync; three state files fsynced.
	if n := q.syncs.Load() - syncs; n != 3 {
		t.Errorf("%d fsyncs for 3 items done and 3 failures, want 3", n)
	}
	syncs = q.syncs.Load()
	if err := q.Remove(t.Context(), "m/3"); err != nil {
		t.Fatal(err)
	}
	// The mark and the name of the new done file.
	if n := q.syncs.Load() - syncs; n != 2 {
		t.Errorf("Remove made %d fsyncs, want 2", n)
	}
	b, err := os.ReadFile(filepath.Join(dir, "items", name+doneSuffix))
	if err != nil {
		t.Fatal(err)
	}
	marks, bad := parseDone(b)
	want := map[string]markKind{"m/0": markDone, "m/1": markDone, "m/2": markDone, "m/3": markRemoved}
	if !maps.Equal(marks, want) || bad != 0 {
		t.Errorf("done marks %q (%d bad), want %q", marks, bad, want)
	}
	q.Close()

	// A clean Open: only the items not done, with their attempts.
	q = openTest(t, dir, Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	its := itemsByID(t, q)
	if got := slices.Sorted(maps.Keys(its)); !slices.Equal(got, []string{"m/4", "m/5"}) {
		t.Fatalf("after reopening: %v, want [m/4 m/5]", got)
	}
	if its["m/4"].Attempts != 1 || its["m/4"].LastError != "421 later" {
		t.Errorf("m/4 after reopening: %+v", its["m/4"])
	}
	q.Close()

	// A power loss: the marks not fsynced are lost, and the state files
	// of the items done with them come back. The removed item stays
	// removed; the others are delivered again.
	keepDurableMarks(t, dir)
	for _, id := range []string{"m/0", "m/3"} {
		st := fmt.Sprintf(`{"id":%q,"batch":%q,"attempts":7}`, id, name)
		if err := os.WriteFile(filepath.Join(dir, "items", fileName(id, stateSuffix)), []byte(st), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q = openTest(t, dir, Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	its = itemsByID(t, q)
	if got := slices.Sorted(maps.Keys(its)); !slices.Equal(got, []string{"m/0", "m/1", "m/2", "m/4", "m/5"}) {
		t.Fatalf("after a power loss: %v, want all but m/3", got)
	}
	if q.orphaned != 1 {
		t.Errorf("%d orphaned state files removed, want 1", q.orphaned)
	}
	clock.Advance(2 * time.Hour)
	mu.Lock()
	clear(delivered)
	mu.Unlock()
	stop = q.run(t, deliver)
	waitFor(t, "the deliveries", func() bool { return q.Len() == 2 })
	stop()
	mu.Lock()
	if delivered["m/3"] != 0 {
		t.Error("the removed item was delivered")
	}
	mu.Unlock()
	q.Close()

	// The last items done: the batch file and its done file go.
	clock.Advance(2 * time.Hour)
	q = openTest(t, dir, Options{Now: clock.Now})
	if err := q.Remove(t.Context(), "m/4"); err != nil {
		t.Fatal(err)
	}
	q.run(t, func(ctx context.Context, it Item) error { return nil })
	waitFor(t, "the last delivery", func() bool { return q.Len() == 0 && len(files(t, dir, "items")) == 0 })
}

// TestDoneMarkCut checks that a mark cut short by a crash is ignored, and
// that the marks after it are read.
func TestDoneMarkCut(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	if err := q.Enqueue(t.Context(), item("x1", "b.example", 10), item("x2", "b.example", 10), item("x3", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	name, _ := onlyBatch(t, dir)
	done := filepath.Join(dir, "items", name+doneSuffix)
	if err := os.WriteFile(done, markLine(markDone, "x1")[:6], 0o600); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, dir, Options{})
	if q.Len() != 3 {
		t.Fatalf("Len = %d, want 3", q.Len())
	}
	if err := q.Remove(t.Context(), "x2"); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openTest(t, dir, Options{})
	if got := slices.Sorted(maps.Keys(itemsByID(t, q))); !slices.Equal(got, []string{"x1", "x3"}) {
		t.Errorf("items %v, want [x1 x3]", got)
	}
}

// TestEnqueueAgain checks that an ID enqueued again after its item is done
// is the later item, even when a power loss lost the earlier one's mark;
// once the later item is removed and its batch file gone, the earlier one
// may come back, like any item whose mark was lost, but never the later.
func TestEnqueueAgain(t *testing.T) {
	tests := []struct {
		name      string
		remove    bool // the later item is removed
		wantLater bool // x is the later item
	}{
		{"later item queued", false, true},
		{"later item removed", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			q := openTest(t, dir, Options{Now: clock.Now, MinBackoff: time.Hour})
			if err := q.Enqueue(t.Context(), item("x", "b.example", 10), item("keep", "c.example", 10)); err != nil {
				t.Fatal(err)
			}
			stop := q.run(t, func(ctx context.Context, it Item) error {
				if it.ID == "keep" {
					return errors.New("421 later")
				}
				return nil
			})
			waitFor(t, "x delivered", func() bool { return q.Len() == 1 && itemsByID(t, q)["keep"].Attempts == 1 })
			stop()
			clock.Advance(time.Second)
			later := item("x", "b.example", 20)
			if err := q.Enqueue(t.Context(), later); err != nil {
				t.Fatal(err)
			}
			if tt.remove {
				if err := q.Remove(t.Context(), "x"); err != nil {
					t.Fatal(err)
				}
			}
			q.Close()
			keepDurableMarks(t, dir)
			if n, want := len(batchFiles(t, dir)), map[bool]int{false: 2, true: 1}[tt.remove]; n != want {
				t.Fatalf("%d batch files, want %d", n, want)
			}

			q = openTest(t, dir, Options{Now: clock.Now})
			its := itemsByID(t, q)
			if got := slices.Sorted(maps.Keys(its)); !slices.Equal(got, []string{"keep", "x"}) {
				t.Fatalf("items %v, want [keep x]", got)
			}
			if x := its["x"]; bytes.Equal(x.Message, later.Message) != tt.wantLater || x.Enqueued.Equal(clock.Now()) != tt.wantLater {
				t.Errorf("x of %d bytes, enqueued %v; want the later item: %v", len(x.Message), x.Enqueued, tt.wantLater)
			}
		})
	}
}

// TestFirstLayout checks that the item files of the first layout of the
// queue, one item per file, are read and delivered.
func TestFirstLayout(t *testing.T) {
	dir := t.TempDir()
	items := filepath.Join(dir, "items")
	if err := os.MkdirAll(items, 0o700); err != nil {
		t.Fatal(err)
	}
	now := newClock().Now()
	write := func(name string, it Item) {
		it.Enqueued, it.NextAttempt = now, now
		head, err := encodeItem(&it)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(items, name), slices.Concat(head, it.Message), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old1, old2 := item("old/1", "b.example", 300), item("old/2", "b.example", 30)
	write(fileName(old1.ID, itemSuffix), old1)
	write(fileName(old2.ID, itemSuffix), old2)
	write("other.item", old1) // holds another item
	if err := os.WriteFile(filepath.Join(items, fileName(old2.ID, stateSuffix)), []byte(`{"id":"old/2","attempts":2}`), 0o600); err != nil {
		t.Fatal(err)
	}

	q := openTest(t, dir, Options{})
	its := itemsByID(t, q)
	if got := slices.Sorted(maps.Keys(its)); !slices.Equal(got, []string{"old/1", "old/2"}) {
		t.Fatalf("items %v", got)
	}
	if !bytes.Equal(its["old/1"].Message, old1.Message) || its["old/2"].Attempts != 2 {
		t.Errorf("items read wrong: %+v", its)
	}
	if d := files(t, dir, "damaged"); !slices.Equal(d, []string{"other.item"}) {
		t.Errorf("damaged/ holds %v", d)
	}
	// New items go into batch files, beside the old ones.
	if err := q.Enqueue(t.Context(), item("new", "b.example", 10)); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	q.run(t, func(ctx context.Context, it Item) error { n.Add(1); return nil })
	waitFor(t, "the deliveries", func() bool { return q.Len() == 0 && len(files(t, dir, "items")) == 0 })
	if n.Load() != 3 {
		t.Errorf("%d deliveries, want 3", n.Load())
	}
}
