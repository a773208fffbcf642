package ledger

import (
	"context"

	"github.com/custode/custode/ledger/driver"
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
