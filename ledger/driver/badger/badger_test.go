package badger_test

import (
	"testing"

	"github.com/custode/custode/ledger/driver"
	"github.com/custode/custode/ledger/driver/badger"
	"github.com/custode/custode/ledger/drivertest"
)

func open(t *testing.T, dir string) *badger.DB {
	t.Helper()
	d, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) driver.Driver { return open(t, t.TempDir()) }, drivertest.Options{
		Reopen: func(t *testing.T, d driver.Driver) driver.Driver {
			dir := d.(*badger.DB).Dir()
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dir)
		},
	})
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	var b driver.Batch
	b.Set([]byte("k"), []byte("v"))
	if err := d.Write(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := badger.Open(dir, badger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	err = ro.View(t.Context(), func(r driver.Reader) error {
		v, err := r.Get([]byte("k"))
		if err == nil && string(v) != "v" {
			t.Errorf("read-only Get = %q", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Write(t.Context(), &b); err == nil {
		t.Error("Write on a read-only store succeeded")
	}
}
