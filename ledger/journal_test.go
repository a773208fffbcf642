package ledger

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// appendThenClose appends events [from, from+n) in groups of 10 and closes l.
func appendThenClose(t *testing.T, l *Ledger, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i += 10 {
		evs := make([]Event, 0, 10)
		for k := i; k < min(i+10, from+n); k++ {
			evs = append(evs, pecEvent(k))
		}
		if _, err := l.Append(ctx, evs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func replaceDir(t *testing.T, dir, with string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, with, dir)
}

func verifyOK(t *testing.T, l *Ledger, size uint64) {
	t.Helper()
	if got := l.Head().Size; got != size {
		t.Fatalf("size %d, want %d", got, size)
	}
	r, err := l.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("verify: %v", r.Problems)
	}
	page, err := l.Find(context.Background(), Query{Identificativo: pecEvent(int(size) - 1).Identificativo})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) == 0 {
		t.Fatalf("the last entry is not indexed")
	}
}

// TestJournalReplaysWhatTheStoreLost stands for a power loss after which the
// store (not synced) has lost its last groups: the journal brings them back.
func TestJournalReplaysWhatTheStoreLost(t *testing.T) {
	dir := t.TempDir()
	appendThenClose(t, openTest(t, dir, nil), 0, 300)
	old := t.TempDir()
	copyDir(t, filepath.Join(dir, "entries"), old)
	appendThenClose(t, openTest(t, dir, nil), 300, 200)

	replaceDir(t, filepath.Join(dir, "entries"), old)
	if _, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "journal holds entries 300-499") {
		t.Fatalf("read-only open of a store behind its journal: %v", err)
	}
	l := openTest(t, dir, nil)
	defer l.Close()
	verifyOK(t, l, 500)
	if _, err := l.Append(context.Background(), pecEvent(500)); err != nil {
		t.Fatal(err)
	}
}

// TestJournalCatchesUpWithTheStore stands for a crash between the store's
// commit and the journal's: the store's extra group is journaled at Open, so
// that a later loss of the store still finds it.
func TestJournalCatchesUpWithTheStore(t *testing.T) {
	dir := t.TempDir()
	appendThenClose(t, openTest(t, dir, nil), 0, 200)
	oldJournal := t.TempDir()
	copyDir(t, filepath.Join(dir, "journal"), oldJournal)
	oldStore := t.TempDir()
	copyDir(t, filepath.Join(dir, "entries"), oldStore)
	appendThenClose(t, openTest(t, dir, nil), 200, 100)

	replaceDir(t, filepath.Join(dir, "journal"), oldJournal)
	appendThenClose(t, openTest(t, dir, nil), 300, 10) // journals 200-299, then appends
	replaceDir(t, filepath.Join(dir, "entries"), oldStore)
	l := openTest(t, dir, nil)
	defer l.Close()
	verifyOK(t, l, 310)
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	firsts, err := journalSegments(filepath.Join(dir, "journal"))
	if err != nil || len(firsts) == 0 {
		t.Fatalf("segments: %v %v", firsts, err)
	}
	return segmentPath(filepath.Join(dir, "journal"), firsts[len(firsts)-1])
}

// recordEnds returns the offsets where the records of a segment end.
func recordEnds(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int
	for off := 0; ; {
		_, n, err := readJournalRecord(data[off:])
		if err != nil {
			return ends
		}
		off += n
		ends = append(ends, off)
	}
}

func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	appendThenClose(t, openTest(t, dir, nil), 0, 100)
	seg := lastSegment(t, dir)
	ends := recordEnds(t, seg)
	// Half of a record after the last one, as a crash mid-write leaves it.
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := encodeJournalRecord(100, [][]byte{[]byte(`{"torn":true}`), []byte(`{"x":1}`)})
	if _, err := f.WriteAt(rec[:len(rec)/2], int64(ends[len(ends)-1])); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l := openTest(t, dir, nil)
	if got := recordEnds(t, seg); len(got) != len(ends) {
		t.Fatalf("after open: %d records, want %d", len(got), len(ends))
	}
	appendThenClose(t, l, 100, 50)
	l = openTest(t, dir, nil)
	defer l.Close()
	verifyOK(t, l, 150)
}

func TestJournalDamageRefused(t *testing.T) {
	dir := t.TempDir()
	appendThenClose(t, openTest(t, dir, nil), 0, 100)
	old := t.TempDir()
	copyDir(t, filepath.Join(dir, "entries"), old)
	appendThenClose(t, openTest(t, dir, nil), 100, 100)
	replaceDir(t, filepath.Join(dir, "entries"), old)

	// A byte flipped in a record that must be replayed, with records after it.
	seg := lastSegment(t, dir)
	ends := recordEnds(t, seg)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[ends[len(ends)-3]+40] ^= 0x01
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "journal") {
		t.Fatalf("open with a damaged journal: %v", err)
	}
	t.Log(err)
}

func TestJournalRecordRoundTrip(t *testing.T) {
	entries := [][]byte{[]byte("a"), {}, []byte(strings.Repeat("x", 1000))}
	rec := encodeJournalRecord(42, entries)
	got, n, err := readJournalRecord(append(rec, 0, 0, 0))
	if err != nil || n != len(rec) || got.first != 42 || len(got.entries) != 3 || string(got.entries[2]) != strings.Repeat("x", 1000) {
		t.Fatalf("got %+v %d %v", got, n, err)
	}
	for _, bad := range [][]byte{rec[:len(rec)-1], rec[:5], {1, 2, 3, 4, 5, 6, 7, 8, 9}} {
		if _, _, err := readJournalRecord(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
	if _, _, err := readJournalRecord(make([]byte, 100)); err != errEndOfRecords {
		t.Errorf("zeros: %v", err)
	}
}
