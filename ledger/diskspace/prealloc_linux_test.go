package diskspace

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// allocated returns the bytes of path that have blocks, and its size.
func allocated(t *testing.T, path string) (int64, int64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512, st.Size
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func TestPreallocate(t *testing.T) {
	dir := t.TempDir()
	before := filepath.Join(dir, "000001.vlog")
	table := filepath.Join(dir, "000001.sst")
	sparse(t, before, 8<<20)
	sparse(t, table, 8<<20)
	if a, _ := allocated(t, before); a >= 8<<20 {
		t.Skipf("this filesystem does not make sparse files (%d bytes allocated)", a)
	}

	p, err := Preallocate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if a, size := allocated(t, before); a < size {
		t.Errorf("%s, present at the start: %d of %d bytes allocated", before, a, size)
	}

	// Created afterwards, then resized as badger does (create, truncate).
	for _, name := range []string{"00002.mem", "000002.vlog", "DISCARD"} {
		path := filepath.Join(dir, name)
		sparse(t, path, 4<<20)
		deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed bound
		for {
			a, size := allocated(t, path)
			if a >= size {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s, created after the start: %d of %d bytes allocated after 10 s", name, a, size)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if a, _ := allocated(t, table); a != 0 {
		t.Errorf("%s: %d bytes allocated, want none (tables are not preallocated)", table, a)
	}
	if s := p.Sparse(); len(s) != 0 {
		t.Errorf("Sparse() = %v, want none", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPreallocateMissingDir(t *testing.T) {
	if _, err := Preallocate(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Fatal("Preallocate of a missing directory: no error")
	}
}
