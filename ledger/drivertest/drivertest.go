// Package drivertest is the conformance suite every ledger driver must
// pass: one [Run] call from the driver's tests, with a constructor for
// fresh, empty stores and the hooks the driver can offer.
package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/custode/custode/ledger/driver"
)

// Options are a driver's hooks into the suite. The zero value runs the
// cases that need no hook.
type Options struct {
	// Reopen, if set, closes d and opens the same store again; the suite
	// then checks that writes made durable by Sync survive. Nil skips that
	// case (for stores that keep nothing, like ledger/driver/mem).
	Reopen func(t *testing.T, d driver.Driver) driver.Driver
}

// Run runs every case against fresh stores from newDriver. The suite
// closes the stores it gets (a second Close from a t.Cleanup of the
// constructor is expected to return an error, not to panic).
func Run(t *testing.T, newDriver func(t *testing.T) driver.Driver, opts Options) {
	cases := []struct {
		name string
		fn   func(t *testing.T, d driver.Driver)
	}{
		{"GetMissing", testGetMissing},
		{"BatchVisibility", testBatchVisibility},
		{"BatchAtomicity", testBatchAtomicity},
		{"LaterOpWins", testLaterOpWins},
		{"Delete", testDelete},
		{"Scan", testScan},
		{"ScanBreak", testScanBreak},
		{"Snapshot", testSnapshot},
		{"NoAliasing", testNoAliasing},
		{"LargeValues", testLargeValues},
		{"CancelledContext", testCancelled},
		{"Compact", testCompact},
		{"AfterClose", testAfterClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t)
			c.fn(t, d)
		})
	}
	t.Run("Reopen", func(t *testing.T) {
		if opts.Reopen == nil {
			t.Skip("the driver offers no Reopen hook")
		}
		testReopen(t, newDriver(t), opts.Reopen)
	})
}

var ctx = context.Background()

func write(t *testing.T, d driver.Driver, kvs ...string) {
	t.Helper()
	var b driver.Batch
	for i := 0; i+1 < len(kvs); i += 2 {
		b.Set([]byte(kvs[i]), []byte(kvs[i+1]))
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func get(t *testing.T, d driver.Driver, key string) (string, error) {
	t.Helper()
	var v []byte
	err := d.View(ctx, func(r driver.Reader) error {
		var err error
		v, err = r.Get([]byte(key))
		return err
	})
	return string(v), err
}

func wantValue(t *testing.T, d driver.Driver, key, want string) {
	t.Helper()
	got, err := get(t, d, key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, want)
	}
	if got != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func wantMissing(t *testing.T, d driver.Driver, key string) {
	t.Helper()
	got, err := get(t, d, key)
	if !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

// scan returns the keys (and key=value pairs) a Scan yields.
func scan(t *testing.T, d driver.Driver, prefix, start string, startNil, reverse bool) []string {
	t.Helper()
	var out []string
	err := d.View(ctx, func(r driver.Reader) error {
		var s []byte
		if !startNil {
			s = []byte(start)
		}
		for kv, err := range r.Scan([]byte(prefix), s, reverse) {
			if err != nil {
				return err
			}
			out = append(out, string(kv.Key)+"="+string(kv.Value))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q, %v): %v", prefix, start, reverse, err)
	}
	return out
}

func testGetMissing(t *testing.T, d driver.Driver) {
	defer d.Close()
	wantMissing(t, d, "a")
	write(t, d, "a", "1")
	wantMissing(t, d, "b")
	wantMissing(t, d, "a\x00")
	wantMissing(t, d, "")
	wantValue(t, d, "a", "1")
	write(t, d, "empty", "")
	wantValue(t, d, "empty", "")
}

func testBatchVisibility(t *testing.T, d driver.Driver) {
	defer d.Close()
	var b driver.Batch
	for i := range 100 {
		b.Set(fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i))
	}
	if b.Len() != 100 {
		t.Fatalf("Len = %d, want 100", b.Len())
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		wantValue(t, d, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	b.Reset()
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("after Reset: Len %d, Bytes %d", b.Len(), b.Bytes())
	}
	// An empty batch is allowed and changes nothing.
	if err := d.Write(ctx, &b); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	wantValue(t, d, "k000", "v0")
}

// testBatchAtomicity writes batches that set every key to the same value
// while readers check that no snapshot mixes two batches.
func testBatchAtomicity(t *testing.T, d driver.Driver) {
	defer d.Close()
	const keys, rounds = 20, 200
	key := func(i int) []byte { return fmt.Appendf(nil, "atom/%02d", i) }
	var b driver.Batch
	for i := range keys {
		b.Set(key(i), []byte("0"))
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			err := d.View(ctx, func(r driver.Reader) error {
				var first []byte
				n := 0
				for kv, err := range r.Scan([]byte("atom/"), nil, false) {
					if err != nil {
						return err
					}
					if first == nil {
						first = kv.Value
					} else if !bytes.Equal(kv.Value, first) {
						return fmt.Errorf("one snapshot holds %s=%q and %s=%q: a batch was seen in part", "atom/00", first, kv.Key, kv.Value)
					}
					n++
				}
				if n != keys {
					return fmt.Errorf("scan saw %d keys, want %d", n, keys)
				}
				return nil
			})
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}()
	for round := 1; round <= rounds; round++ {
		b.Reset()
		for i := range keys {
			b.Set(key(i), fmt.Appendf(nil, "%d", round))
		}
		if err := d.Write(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func testLaterOpWins(t *testing.T, d driver.Driver) {
	defer d.Close()
	var b driver.Batch
	b.Set([]byte("x"), []byte("1"))
	b.Set([]byte("x"), []byte("2"))
	b.Set([]byte("y"), []byte("1"))
	b.Delete([]byte("y"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	wantValue(t, d, "x", "2")
	wantMissing(t, d, "y")
}

func testDelete(t *testing.T, d driver.Driver) {
	defer d.Close()
	write(t, d, "a", "1", "b", "2", "c", "3")
	var b driver.Batch
	b.Delete([]byte("b"))
	b.Delete([]byte("never-written"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, d, "b")
	wantValue(t, d, "a", "1")
	wantValue(t, d, "c", "3")
	if got, want := scan(t, d, "", "", true, false), []string{"a=1", "c=3"}; !slices.Equal(got, want) {
		t.Fatalf("scan after delete = %q, want %q", got, want)
	}
	// Set again after a delete.
	write(t, d, "b", "4")
	wantValue(t, d, "b", "4")
}

func testScan(t *testing.T, d driver.Driver) {
	defer d.Close()
	// Neighbours of prefix "p" on both sides, keys equal to the prefix
	// and to its end, and 0xff bytes.
	write(t, d,
		"o\xff", "before",
		"p", "p0",
		"p\x00", "p1",
		"p1", "p2",
		"p2", "p3",
		"p\xff", "p4",
		"p\xff\xff", "p5",
		"q", "after",
		"q\x00", "after2",
		"\xff\xff", "last",
	)
	all := []string{"p=p0", "p\x00=p1", "p1=p2", "p2=p3", "p\xff=p4", "p\xff\xff=p5"}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	cases := []struct {
		name          string
		prefix, start string
		startNil      bool
		reverse       bool
		want          []string
	}{
		{"forward", "p", "", true, false, all},
		{"reverse", "p", "", true, true, rev},
		{"forward from a key", "p", "p1", false, false, all[2:]},
		{"forward from between keys", "p", "p10", false, false, all[3:]},
		{"forward from before the prefix", "p", "a", false, false, all},
		{"forward from after the prefix", "p", "q", false, false, nil},
		{"reverse from a key", "p", "p1", false, true, rev[3:]},
		{"reverse from between keys", "p", "p10", false, true, rev[3:]},
		{"reverse from after the prefix", "p", "z", false, true, rev},
		{"reverse from before the prefix", "p", "a", false, true, nil},
		{"reverse from the prefix end", "p", "q", false, true, rev},
		{"two-byte prefix", "p\xff", "", true, false, all[4:]},
		{"two-byte prefix reverse", "p\xff", "", true, true, rev[:2]},
		{"all-0xff prefix reverse", "\xff", "", true, true, []string{"\xff\xff=last"}},
		{"missing prefix", "m", "", true, false, nil},
		{"missing prefix reverse", "m", "", true, true, nil},
		{"empty prefix", "", "", true, false, append(append([]string{"o\xff=before"}, all...), "q=after", "q\x00=after2", "\xff\xff=last")},
		{"empty prefix reverse from q", "", "q", false, true, append([]string{"q=after"}, append(rev, "o\xff=before")...)},
	}
	for _, c := range cases {
		got := scan(t, d, c.prefix, c.start, c.startNil, c.reverse)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Scan(%q, %q, reverse %v) = %q, want %q", c.name, c.prefix, c.start, c.reverse, got, c.want)
		}
	}
}

func testScanBreak(t *testing.T, d driver.Driver) {
	defer d.Close()
	for i := range 300 {
		write(t, d, fmt.Sprintf("s%03d", i), "v")
	}
	for _, reverse := range []bool{false, true} {
		n := 0
		err := d.View(ctx, func(r driver.Reader) error {
			for _, err := range r.Scan([]byte("s"), nil, reverse) {
				if err != nil {
					return err
				}
				if n++; n == 3 {
					break
				}
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("reverse %v: break after 3: n = %d, err %v", reverse, n, err)
		}
	}
}

// testSnapshot writes, from another goroutine, while a View runs, and
// checks that the View sees none of it.
func testSnapshot(t *testing.T, d driver.Driver) {
	defer d.Close()
	write(t, d, "s/a", "old", "s/b", "old", "s/d", "old")
	err := d.View(ctx, func(r driver.Reader) error {
		before := scanAll(r, "s/")
		werr := make(chan error, 1)
		go func() {
			var b driver.Batch
			b.Set([]byte("s/a"), []byte("new"))
			b.Set([]byte("s/c"), []byte("new"))
			b.Delete([]byte("s/d"))
			werr <- d.Write(ctx, &b)
		}()
		if err := <-werr; err != nil {
			return fmt.Errorf("a Write during View: %w", err)
		}
		v, err := r.Get([]byte("s/a"))
		if err != nil || string(v) != "old" {
			return fmt.Errorf("a Get in the View after a Write = %q, %v; want the snapshot's %q", v, err, "old")
		}
		if v, err := r.Get([]byte("s/c")); !errors.Is(err, driver.ErrNotFound) {
			return fmt.Errorf("a Get of a key written during the View = %q, %v; want ErrNotFound", v, err)
		}
		if v, err := r.Get([]byte("s/d")); err != nil || string(v) != "old" {
			return fmt.Errorf("a Get of a key deleted during the View = %q, %v; want %q", v, err, "old")
		}
		if after := scanAll(r, "s/"); !slices.Equal(after, before) {
			return fmt.Errorf("scan in the View after a Write = %q, before %q", after, before)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, d, "s/a", "new")
	wantValue(t, d, "s/c", "new")
	wantMissing(t, d, "s/d")
}

func scanAll(r driver.Reader, prefix string) []string {
	var out []string
	for kv, err := range r.Scan([]byte(prefix), nil, false) {
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		out = append(out, string(kv.Key)+"="+string(kv.Value))
	}
	return out
}

// testNoAliasing changes every slice that crosses the seam and checks
// that the store did not change.
func testNoAliasing(t *testing.T, d driver.Driver) {
	defer d.Close()
	k, v := []byte("alias"), []byte("value")
	var b driver.Batch
	b.Set(k, v)
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	k[0], v[0] = 'X', 'X'
	wantValue(t, d, "alias", "value")
	err := d.View(ctx, func(r driver.Reader) error {
		got, err := r.Get([]byte("alias"))
		if err != nil {
			return err
		}
		got[0] = 'Y'
		for kv, err := range r.Scan([]byte("al"), nil, false) {
			if err != nil {
				return err
			}
			kv.Key[0], kv.Value[0] = 'Z', 'Z'
		}
		for kv, err := range r.Scan([]byte("al"), nil, true) {
			if err != nil {
				return err
			}
			kv.Key[1], kv.Value[1] = 'Z', 'Z'
		}
		again, err := r.Get([]byte("alias"))
		if err != nil || string(again) != "value" {
			return fmt.Errorf("after changing returned slices, Get in the same View = %q, %v", again, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, d, "alias", "value")
	if got := scan(t, d, "", "", true, false); !slices.Equal(got, []string{"alias=value"}) {
		t.Fatalf("after changing returned slices, the store holds %q", got)
	}
}

func testLargeValues(t *testing.T, d driver.Driver) {
	defer d.Close()
	sizes := []int{255, 256, 257, 300, 4096, 1 << 20}
	var b driver.Batch
	vals := make(map[string][]byte)
	for i, n := range sizes {
		v := make([]byte, n)
		for j := range v {
			v[j] = byte(i + j*7)
		}
		k := fmt.Sprintf("big/%d", n)
		vals[k] = v
		b.Set([]byte(k), v)
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	err := d.View(ctx, func(r driver.Reader) error {
		for k, want := range vals {
			got, err := r.Get([]byte(k))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("Get(%s): %d bytes differ from the %d written", k, len(got), len(want))
			}
		}
		n := 0
		for kv, err := range r.Scan([]byte("big/"), nil, false) {
			if err != nil {
				return err
			}
			if !bytes.Equal(kv.Value, vals[string(kv.Key)]) {
				return fmt.Errorf("scan: %s: value differs", kv.Key)
			}
			n++
		}
		if n != len(sizes) {
			return fmt.Errorf("a Scan saw %d large values, want %d", n, len(sizes))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testCancelled(t *testing.T, d driver.Driver) {
	defer d.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var b driver.Batch
	b.Set([]byte("c1"), []byte("v"))
	b.Set([]byte("c2"), []byte("v"))
	if err := d.Write(cctx, &b); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	wantMissing(t, d, "c1")
	wantMissing(t, d, "c2")
	ran := false
	if err := d.View(cctx, func(driver.Reader) error { ran = true; return nil }); err == nil || ran {
		t.Fatalf("View with a cancelled context: err %v, callback ran %v", err, ran)
	}
	// A scan notices a context cancelled while it runs.
	for i := range 3000 {
		b.Set(fmt.Appendf(nil, "n%05d", i), []byte("v"))
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithCancel(ctx)
	defer vcancel()
	n := 0
	err := d.View(vctx, func(r driver.Reader) error {
		for _, err := range r.Scan([]byte("n"), nil, false) {
			if err != nil {
				return err
			}
			if n++; n == 1 {
				vcancel()
			}
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 3000 {
		t.Fatalf("a scan whose context was cancelled after 1 of 3000 keys read %d keys and returned %v", n, err)
	}
	// A View whose callback fails returns that error.
	sentinel := errors.New("sentinel")
	if err := d.View(ctx, func(driver.Reader) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("View returned %v, want the callback's error", err)
	}
}

func testCompact(t *testing.T, d driver.Driver) {
	defer d.Close()
	const n = 2000
	val := bytes.Repeat([]byte("v"), 1024)
	var b driver.Batch
	for i := range n {
		b.Set(fmt.Appendf(nil, "c%05d", i), val)
		if b.Len() == 500 {
			if err := d.Write(ctx, &b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	for i := 0; i < n; i += 2 {
		b.Delete(fmt.Appendf(nil, "c%05d", i))
	}
	for i := 1; i < n; i += 4 {
		b.Set(fmt.Appendf(nil, "c%05d", i), []byte("rewritten"))
	}
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Compact(ctx); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	err := d.View(ctx, func(r driver.Reader) error {
		want := 1
		for kv, err := range r.Scan([]byte("c"), nil, false) {
			if err != nil {
				return err
			}
			if k := fmt.Sprintf("c%05d", want); string(kv.Key) != k {
				return fmt.Errorf("after Compact: key %q, want %q", kv.Key, k)
			}
			wantV := val
			if want%4 == 1 {
				wantV = []byte("rewritten")
			}
			if !bytes.Equal(kv.Value, wantV) {
				return fmt.Errorf("after Compact: %s has a wrong value", kv.Key)
			}
			want += 2
		}
		if want != n+1 {
			return fmt.Errorf("after Compact: scan ended before c%05d", want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMissing(t, d, "c00000")
}

func testAfterClose(t *testing.T, d driver.Driver) {
	write(t, d, "a", "1")
	// A View open across Close: its reads after Close fail or succeed,
	// but never panic. (Close may wait for it: run it first.)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"View", func() error { return d.View(ctx, func(driver.Reader) error { return nil }) }},
		{"Write", func() error {
			var b driver.Batch
			b.Set([]byte("b"), []byte("2"))
			return d.Write(ctx, &b)
		}},
		{"Sync", func() error { return d.Sync(ctx) }},
		{"Compact", func() error { return d.Compact(ctx) }},
		{"Close", d.Close},
	}
	for _, c := range calls {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s after Close panicked: %v", c.name, p)
				}
			}()
			if err := c.fn(); err == nil {
				t.Errorf("%s after Close returned no error", c.name)
			} else if !errors.Is(err, driver.ErrClosed) {
				t.Errorf("%s after Close: %v, want an error wrapping driver.ErrClosed", c.name, err)
			}
		}()
	}
}

func testReopen(t *testing.T, d driver.Driver, reopen func(*testing.T, driver.Driver) driver.Driver) {
	big := bytes.Repeat([]byte("L"), 4096)
	var b driver.Batch
	b.Set([]byte("r/small"), []byte("s"))
	b.Set([]byte("r/big"), big)
	b.Set([]byte("r/gone"), []byte("x"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Delete([]byte("r/gone"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d)
	defer d.Close()
	wantValue(t, d, "r/small", "s")
	wantValue(t, d, "r/big", string(big))
	wantMissing(t, d, "r/gone")
	if got := scan(t, d, "r/", "", true, true); !slices.Equal(got, []string{"r/small=s", "r/big=" + string(big)}) {
		t.Fatalf("reverse scan after reopen: %d pairs, want 2", len(got))
	}
}
