package ledger

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"sync"
	"testing"

	"github.com/custode/custode/ledger/driver"
	memdriver "github.com/custode/custode/ledger/driver/mem"
	"github.com/dgraph-io/badger/v4"
)

// testTxn collects the sets of a test's direct write to the store.
type testTxn struct{ b driver.Batch }

func (t *testTxn) Set(k, v []byte) error { t.b.Set(k, v); return nil }

// testUpdate writes to l's store, behind the ledger's back, what fn sets,
// in one batch.
func testUpdate(l *Ledger, fn func(txn *testTxn) error) error {
	var t testTxn
	if err := fn(&t); err != nil {
		return err
	}
	return l.db.Write(context.Background(), &t.b)
}

// testWriteBatch writes many sets to l's store, in batches of 1000.
type testWriteBatch struct {
	l *Ledger
	b driver.Batch
}

func (w *testWriteBatch) Set(k, v []byte) error {
	w.b.Set(k, v)
	if w.b.Len() < 1000 {
		return nil
	}
	return w.Flush()
}

func (w *testWriteBatch) Flush() error {
	err := w.l.db.Write(context.Background(), &w.b)
	w.b.Reset()
	return err
}

// getValue reads a key from a raw badger transaction: tests that alter a
// closed ledger's store open it with badger itself, as an intruder would.
func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// TestFormatAcrossDrivers writes a ledger through the default driver,
// reads its store with badger itself to check FORMAT.md's keys, copies
// every key and value into an in-memory driver, and opens and verifies the
// copy: the ledger's bytes do not depend on the driver, so a store written
// before the Driver seam (the same keys, written by badger) still opens.
func TestFormatAcrossDrivers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openTest(t, dir, testCheckpoints(t, testAuthority(t, nil)))
	const n = 600
	for i := 0; i < n; i += 100 {
		evs := make([]Event, 100)
		for j := range evs {
			evs[j] = pecEvent(i + j)
		}
		if _, err := l.Append(ctx, evs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "entries")).WithLogger(nil).WithReadOnly(true))
	if err != nil {
		t.Fatal(err)
	}
	mem := memdriver.New()
	var b driver.Batch
	counts := map[byte]int{}
	var head Head // from m:head; Close appended checkpoint entries
	var lastRaw []byte
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			switch {
			case string(k) == string(keyHead):
				if len(v) != 40 {
					t.Fatalf("m:head = %x, want 40 bytes", v)
				}
				head.Size, head.LastLeaf = binary.BigEndian.Uint64(v), [32]byte(v[8:])
			case k[0] == prefixEntry && len(k) == 9:
				if _, err := DecodeEntry(v); err != nil {
					t.Errorf("entry %x: %v", k, err)
				}
				lastRaw = v
			case k[0] == prefixNode && len(k) == 10 && k[1]%storedLevelStep == 0:
			case k[0] == prefixCheckpoint && len(k) == 9:
				if _, err := decodeCheckpointRecord(v); err != nil {
					t.Errorf("checkpoint %x: %v", k, err)
				}
			default:
				t.Errorf("key %x is not one FORMAT.md names", k)
			}
			counts[k[0]]++
			b.Set(k, v)
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(counts[prefixEntry]) != head.Size || head.Size < n || counts[prefixNode] == 0 || counts[prefixCheckpoint] == 0 {
		t.Fatalf("store holds %d entries (head %d, appended %d), %d nodes, %d checkpoints", counts[prefixEntry], head.Size, n, counts[prefixNode], counts[prefixCheckpoint])
	}
	if LeafHash(lastRaw) != head.LastLeaf {
		t.Fatalf("the last entry's leaf hash differs from m:head's")
	}
	if err := mem.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}

	l, err = Open(ctx, Options{Dir: t.TempDir(), Driver: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Head(); got.Size != head.Size || got.LastLeaf != head.LastLeaf {
		t.Fatalf("head through the mem driver = %+v, want %+v", got, head)
	}
	d := testPKI(t)
	r, err := l.Verify(ctx, VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.To != head.Size || r.Checkpoints == 0 {
		t.Fatalf("verify through the mem driver: %+v", r)
	}
}

// memStores holds, in -short mode, the in-memory store of each ledger
// directory that a logic test opens through storeFor.
var memStores sync.Map // dir -> *memdriver.DB

// kept is a driver whose Close keeps the store, so that a ledger closed
// and opened again on the same directory finds it.
type kept struct{ driver.Driver }

func (kept) Close() error { return nil }

// storeFor returns the driver a test of the ledger's logic (not of its
// durability) opens dir with: nil, badger in dir/entries, normally; in
// -short mode an in-memory store that outlives the ledger's Close, so that
// the test reopens and copies dir without badger's files.
func storeFor(t testing.TB, dir string) driver.Driver {
	if !testing.Short() {
		return nil
	}
	v, loaded := memStores.LoadOrStore(dir, memdriver.New())
	if !loaded {
		t.Cleanup(func() { memStores.Delete(dir) })
	}
	return kept{v.(*memdriver.DB)}
}

// copyLedger copies the ledger directory src into dst, with its store
// (badger's files, or storeFor's in-memory store).
func copyLedger(t testing.TB, src, dst string) {
	t.Helper()
	copyTree(t, src, dst)
	if v, ok := memStores.Load(src); ok {
		c, err := v.(*memdriver.DB).Clone()
		if err != nil {
			t.Fatal(err)
		}
		if _, loaded := memStores.LoadOrStore(dst, c); loaded {
			t.Fatalf("copy %s: %s already has a store", src, dst)
		}
		t.Cleanup(func() { memStores.Delete(dst) })
	}
}

// openLogicTest is openTest on storeFor's driver.
func openLogicTest(t testing.TB, dir string, cp *CheckpointOptions) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), Options{Dir: dir, Checkpoints: cp, Driver: storeFor(t, dir), journalSegmentBytes: testSegmentBytes()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// alterEntry changes stored entry seq of the closed ledger in dir by f,
// behind the ledger's back, in the store storeFor gives: with badger
// itself on badger's files, or in the in-memory store.
func alterEntry(t testing.TB, dir string, seq uint64, f func(raw []byte) []byte) {
	t.Helper()
	ctx := context.Background()
	if v, ok := memStores.Load(dir); ok {
		d := v.(*memdriver.DB)
		var raw []byte
		err := d.View(ctx, func(r driver.Reader) error {
			var err error
			raw, err = r.Get(entryKey(seq))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var b driver.Batch
		b.Set(entryKey(seq), f(raw))
		if err := d.Write(ctx, &b); err != nil {
			t.Fatal(err)
		}
		return
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "entries")).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(txn *badger.Txn) error {
		raw, err := getValue(txn, entryKey(seq))
		if err != nil {
			return err
		}
		return txn.Set(entryKey(seq), f(raw))
	})
	if err != nil {
		t.Fatal(err)
	}
}
