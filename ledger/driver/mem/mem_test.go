package mem_test

import (
	"errors"
	"testing"

	"github.com/custode/custode/ledger/driver"
	"github.com/custode/custode/ledger/driver/mem"
	"github.com/custode/custode/ledger/drivertest"
)

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(*testing.T) driver.Driver { return mem.New() }, drivertest.Options{})
}

func TestClone(t *testing.T) {
	ctx := t.Context()
	d := mem.New()
	var b driver.Batch
	b.Set([]byte("a"), []byte("1"))
	b.Set([]byte("b"), []byte("2"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Delete([]byte("b"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	c, err := d.Clone()
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Set([]byte("a"), []byte("changed"))
	if err := d.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = c.View(ctx, func(r driver.Reader) error {
		for kv, err := range r.Scan(nil, nil, false) {
			if err != nil {
				return err
			}
			got = append(got, string(kv.Key)+"="+string(kv.Value))
		}
		return nil
	})
	if err != nil || len(got) != 1 || got[0] != "a=1" {
		t.Fatalf("clone holds %q, %v; want [a=1]", got, err)
	}
	d.Close()
	if _, err := d.Clone(); !errors.Is(err, driver.ErrClosed) {
		t.Fatalf("Clone after Close: %v", err)
	}
}
