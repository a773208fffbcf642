package ledger

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// findAll runs q page by page.
func findAll(t *testing.T, l *Ledger, q Query) []*Entry {
	t.Helper()
	var got []*Entry
	q.Limit = 50
	for {
		p, err := l.Find(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Entries...)
		if p.Next == "" {
			return got
		}
		q.Cursor = p.Next
	}
}

// checkFind compares what Find returns for a few queries with what the first
// n events say, in index order.
func checkFind(t *testing.T, l *Ledger, n int) {
	t.Helper()
	queries := []Query{
		{Identificativo: pecEvent(n - 5).Identificativo},
		{Identificativo: pecEvent(17).Related[0]},
		{ClientMessageID: "<3.client@mua.example>"},
		{Mailbox: "MITTENTE5@pec.test.example"},
		{Mailbox: "ufficio@example.com", From: baseTime.Add(100 * time.Millisecond), To: baseTime.Add(700 * time.Millisecond)},
		{Kind: KindPresaInCarico},
		{Kind: KindAccettazione, Mailbox: "dest0@pec.altro.example"},
		{Identificativo: "nope@x"},
	}
	for _, q := range queries {
		var want []uint64
		for i := range n {
			if q.Matches(&Entry{Seq: uint64(i), Event: pecEvent(i)}) {
				want = append(want, uint64(i))
			}
		}
		var got []uint64
		for _, e := range findAll(t, l, q) {
			got = append(got, e.Seq)
		}
		// pecEvent's times grow with i: index order is sequence order.
		if !slices.Equal(got, want) {
			t.Errorf("%+v: got %d entries %v, want %d %v", q, len(got), got, len(want), want)
		}
	}
}

func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, indexDirName, "*"+runSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestIndexRuns makes the index spill to many small run files, which are
// merged, and checks queries across files and memory, after reopening, and
// after losing run files.
func TestIndexRuns(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	l.index.memMax = 300
	const n = 3000
	appendN(t, l, 0, n)
	checkFind(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	runs := runFiles(t, dir)
	// How far the background merges got depends on the machine's load:
	// anything from one file to a few, never one per spill (30 spills).
	if len(runs) == 0 || len(runs) > 20 {
		t.Fatalf("%d run files: want a few, merged", len(runs))
	}

	l = openTest(t, dir, nil)
	checkFind(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash may lose run files that were never merged: the entries
	// they covered are indexed again, from the first one missing.
	slices.Sort(runs)
	if err := os.Remove(runs[len(runs)/2]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(runs[len(runs)-1]+".tmp", []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	checkFind(t, l, n)
	appendN(t, l, n, 100)
	checkFind(t, l, n+100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	checkFind(t, ro, n+100)
}

// TestOldIndexRemoved opens a store with the index directory of the
// previous layout: it is removed and the index rebuilt.
func TestOldIndexRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	appendN(t, l, 0, 200)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, indexDirName)); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "index")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "MANIFEST"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the old index is still there: %v", err)
	}
	checkFind(t, l, 200)
}
