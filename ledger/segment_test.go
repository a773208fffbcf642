package ledger

import (
	"bytes"
	"context"
	"testing"
)

// sampleSegment returns the byte form of a segment of a small ledger with a
// checkpoint (not timestamped: the parsers do not care).
func sampleSegment(t testing.TB, from, to uint64) []byte {
	t.Helper()
	dir := t.(interface{ TempDir() string }).TempDir()
	l := openTest(t, dir, nil)
	defer l.Close()
	for i := range int(to) {
		if _, err := l.Append(context.Background(), pecEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	root := l.Head().Root
	c := &Checkpoint{Origin: "pec.test.example/custode", Size: to, Root: root}
	c.Body = checkpointBody(c.Origin, c.Size, c.Root, c.Prev, c.Time)
	if err := l.putCheckpoint(c); err != nil {
		t.Fatal(err)
	}
	s, err := l.Segment(context.Background(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSegmentCheck(t *testing.T) {
	b := sampleSegment(t, 7, 20)
	s, err := ParseSegment(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(nil); err != nil {
		t.Fatal(err)
	}
	again, _ := s.MarshalBinary()
	if !bytes.Equal(again, b) {
		t.Fatal("MarshalBinary(ParseSegment(b)) != b")
	}
	// Every single-byte change is caught by parsing or checking, or
	// changes the checkpoint's body, which its signature covers.
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		s2, err := ParseSegment(c)
		if err == nil {
			_, err = s2.Check(nil)
		}
		if err == nil && bytes.Equal(s2.Checkpoint.Body, s.Checkpoint.Body) {
			t.Fatalf("byte %d flipped: segment still checks", i)
		}
	}
}

func FuzzParseSegment(f *testing.F) {
	f.Add(sampleSegment(f, 0, 5))
	f.Add(sampleSegment(f, 3, 9))
	f.Add([]byte(segmentMagic + "{}\n"))
	f.Add([]byte(segmentMagic + `{"from":0,"to":4294967295}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSegment(b)
		if err != nil {
			return
		}
		_, _ = s.Check(nil)
		if _, err := s.MarshalBinary(); err != nil {
			t.Fatalf("a parsed segment does not marshal: %v", err)
		}
	})
}

func FuzzJournalRecord(f *testing.F) {
	f.Add(encodeJournalRecord(0, [][]byte{[]byte(`{"a":1}`), {}}))
	f.Add(encodeJournalRecord(1<<40, nil))
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, n, err := readJournalRecord(b)
		if err != nil {
			return
		}
		if n > len(b) || !bytes.Equal(encodeJournalRecord(rec.first, rec.entries), b[:n]) {
			t.Fatalf("record of %d bytes does not re-encode to itself", n)
		}
	})
}
