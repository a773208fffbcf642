package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/custode/custode/ledger/durable"
)

// The journal is the ledger's write-ahead log and what makes an append
// durable. Each group commit is one record, written and fsynced before any
// Append in the group returns; the badger store is written in parallel
// without its own fsync, and Open replays from the journal whatever the store
// lost in a crash. One write and one fsync of an append-only file cost a
// fraction of a synced badger commit, which writes and syncs two files.
//
// The journal stays, for now, on the driver benchmark of issue 20, `go
// test -run '^$' -bench 'BadgerBatchedSync|Append$/appenders=256$'
// -benchtime 300000x` on 2 shared cores. After the store moved behind
// driver.Driver, appends through the journal against raw badger synced
// batches gave, under load 3-9, 20,706/17,863 (1.16×), 31,096/29,793
// (1.04×), 36,216/23,979, 54,900/66,927 (0.82×) and 44,655/39,544 events/s;
// under load 2.5-3, 82,383/86,124 (0.96×) and 82,378/83,149 (0.99×), with
// the code before the seam giving 83,488/85,374 (0.98×) and 81,737/81,914
// (1.00×) in between. On a quiet machine it was 92,707/87,406 (1.06×). So
// the driver seam costs appends nothing, and the journal is at parity with
// synced driver batches, not clearly ahead: whether to drop it (and let
// Sync make appends durable) is for a measurement on a quiet machine.
//
// A journal directory holds segment files named by the sequence number of
// their first entry (%020d.journal). Segments are written full of zeros
// before they are used (in the background, ahead of need), so that an append
// changes no file metadata and its fdatasync writes only the record. A
// segment is a sequence of records, ended by a zero length or the end of the
// file:
//
//	length  uint32  bytes of payload
//	crc     uint32  CRC-32C of payload
//	payload:
//	  first uint64  sequence number of the first entry
//	  count uint32  number of entries
//	  count × (len uint32, canonical entry bytes)
//
// all integers big-endian. A record cut short or failing its CRC at the end
// of the last segment is the trace of a write that never completed, whose
// appends were never answered: Open zeroes it. Anywhere else it is damage,
// and Open refuses the store.

const (
	journalSuffix = ".journal"
	spareName     = "spare.tmp"
	// journalSegmentBytes is the size of a segment file, unless
	// Options.journalSegmentBytes says otherwise (tests).
	journalSegmentBytes = 64 << 20
	// maxJournalRecord bounds one record; a group is at most maxBatchBytes.
	maxJournalRecord = 2 * maxBatchBytes
	journalHeader    = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journal appends records to the current segment. Its methods are used by
// one goroutine at a time.
type journal struct {
	dir   string
	f     *os.File // current segment, nil before the first record
	off   int64    // end of the records in f
	next  uint64   // sequence number after the last journaled entry
	seg   int64    // size of a new segment file
	spare chan spareResult
}

type spareResult struct {
	f   *os.File
	err error
}

// journalRecord is one decoded record.
type journalRecord struct {
	first   uint64
	entries [][]byte
}

// encodeJournalRecord returns the record holding entries, the first of
// which has sequence number first.
func encodeJournalRecord(first uint64, entries [][]byte) []byte {
	return appendJournalRecord(nil, first, entries)
}

// appendJournalRecord is encodeJournalRecord writing into dst's storage,
// which it grows as needed; dst's contents are overwritten.
func appendJournalRecord(dst []byte, first uint64, entries [][]byte) []byte {
	n := journalHeader + 12
	for _, e := range entries {
		n += 4 + len(e)
	}
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	rec := dst[:journalHeader] // filled in at the end
	rec = binary.BigEndian.AppendUint64(rec, first)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(entries)))
	for _, e := range entries {
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(e)))
		rec = append(rec, e...)
	}
	binary.BigEndian.PutUint32(rec[0:], uint32(len(rec)-journalHeader))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(rec[journalHeader:], castagnoli))
	return rec
}

var (
	// errTornRecord marks a record that is cut short or fails its checksum.
	errTornRecord = errors.New("record cut short or failing its checksum")
	// errEndOfRecords marks the zeros after the last record.
	errEndOfRecords = errors.New("end of records")
)

// readJournalRecord reads the record at the start of b and returns it and
// its length in bytes.
func readJournalRecord(b []byte) (journalRecord, int, error) {
	if len(b) < journalHeader || binary.BigEndian.Uint64(b) == 0 {
		if slices.ContainsFunc(b[:min(len(b), journalHeader)], func(c byte) bool { return c != 0 }) {
			return journalRecord{}, 0, errTornRecord
		}
		return journalRecord{}, 0, errEndOfRecords
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 12 || n > maxJournalRecord || len(b) < journalHeader+n {
		return journalRecord{}, 0, errTornRecord
	}
	payload := b[journalHeader : journalHeader+n]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return journalRecord{}, 0, errTornRecord
	}
	rec := journalRecord{first: binary.BigEndian.Uint64(payload)}
	count := binary.BigEndian.Uint32(payload[8:])
	p := payload[12:]
	for range count {
		if len(p) < 4 || int(binary.BigEndian.Uint32(p)) > len(p)-4 {
			return journalRecord{}, 0, fmt.Errorf("entry %d: length beyond the record", rec.first+uint64(len(rec.entries)))
		}
		l := binary.BigEndian.Uint32(p)
		rec.entries = append(rec.entries, p[4:4+l])
		p = p[4+l:]
	}
	if len(p) != 0 {
		return journalRecord{}, 0, fmt.Errorf("%d bytes after the last entry", len(p))
	}
	return rec, journalHeader + n, nil
}

// journalSegments lists the segments in dir by their first sequence number.
func journalSegments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), journalSuffix)
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || len(name) != 20 {
			return nil, fmt.Errorf("unexpected file %s", de.Name())
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	return firsts, nil
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", first, journalSuffix))
}

// openJournal opens the journal in dir, creating it if needed, and zeroes a
// torn record at its end. It returns the journal positioned for appending
// and the records from the segment holding entry from onwards, for replay.
func openJournal(dir string, from uint64, readOnly bool, segBytes int64) (*journal, []journalRecord, error) {
	if segBytes <= 0 {
		segBytes = journalSegmentBytes
	}
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
		if err := os.Remove(filepath.Join(dir, spareName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
	}
	firsts, err := journalSegments(dir)
	if errors.Is(err, fs.ErrNotExist) && readOnly {
		return &journal{dir: dir, next: from, seg: segBytes}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	j := &journal{dir: dir, next: from, seg: segBytes}
	if len(firsts) == 0 {
		return j, nil, nil
	}
	start := 0
	for i, f := range firsts {
		if f <= from {
			start = i
		}
	}
	var replay []journalRecord
	for i := start; i < len(firsts); i++ {
		last := i == len(firsts)-1
		path := segmentPath(dir, firsts[i])
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		off := 0
		next := firsts[i]
		for off < len(data) {
			rec, n, err := readJournalRecord(data[off:])
			if errors.Is(err, errEndOfRecords) {
				break
			}
			// A torn record ends the last segment, or one whose successor
			// was started after a write failed and could not be undone.
			if errors.Is(err, errTornRecord) && (last || firsts[i+1] == next) && isTail(data, off) {
				if !readOnly {
					if err := zeroFrom(path, int64(off), int64(len(data))); err != nil {
						return nil, nil, err
					}
				}
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s at offset %d: %w", filepath.Base(path), off, err)
			}
			if rec.first != next {
				return nil, nil, fmt.Errorf("%s at offset %d: record starts at entry %d, want %d", filepath.Base(path), off, rec.first, next)
			}
			next += uint64(len(rec.entries))
			if next > from {
				replay = append(replay, rec)
			}
			off += n
		}
		if !last && firsts[i+1] != next {
			return nil, nil, fmt.Errorf("%s ends at entry %d but the next segment starts at %d", filepath.Base(path), next, firsts[i+1])
		}
		if last {
			j.next = next
			if !readOnly {
				if j.f, err = os.OpenFile(path, os.O_WRONLY, 0); err != nil {
					return nil, nil, err
				}
				j.off = int64(off)
			}
		}
	}
	return j, replay, nil
}

// isTail reports whether the record at off, which is torn, is the last
// thing written to the segment: a write cut short leaves a part of one
// record followed by zeros, while damage to a record leaves the records after
// it.
func isTail(data []byte, off int) bool {
	if len(data)-off < journalHeader {
		return true
	}
	end := off + journalHeader + maxJournalRecord
	if n := int(binary.BigEndian.Uint32(data[off:])); n >= 12 && n <= maxJournalRecord {
		end = off + journalHeader + n
	}
	return end >= len(data) || !slices.ContainsFunc(data[end:], func(c byte) bool { return c != 0 })
}

// zeroFrom overwrites path from off to size with zeros and syncs it.
func zeroFrom(path string, off, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, size-off), off)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// append writes rec, which holds count entries from j.next on, and makes
// it durable.
func (j *journal) append(rec []byte, count int) error {
	if len(rec) > maxJournalRecord+journalHeader {
		return fmt.Errorf("journal: record of %d bytes, more than %d", len(rec), maxJournalRecord)
	}
	if j.f == nil || j.off+int64(len(rec)) > j.seg {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return j.fail(err, len(rec))
	}
	if err := fdatasync(j.f); err != nil {
		return j.fail(err, len(rec))
	}
	j.off += int64(len(rec))
	j.next += uint64(count)
	if j.spare == nil && j.off > j.seg/2 {
		j.prepareSpare()
	}
	return nil
}

// fail zeroes what a failed write may have left, so that the next record
// follows the last complete one; a segment it cannot repair is left for a
// new one.
func (j *journal) fail(err error, n int) error {
	if _, zerr := j.f.WriteAt(make([]byte, n), j.off); zerr != nil {
		j.f.Close()
		j.f = nil
		return fmt.Errorf("journal: %w (and zeroing the failed write: %v)", err, zerr)
	}
	return fmt.Errorf("journal: %w", err)
}

// prepareSpare starts writing the next segment file in the background.
func (j *journal) prepareSpare() {
	ch := make(chan spareResult, 1)
	j.spare = ch
	dir, size := j.dir, int(j.seg)
	go func() {
		f, err := newZeroedFile(filepath.Join(dir, spareName), size)
		ch <- spareResult{f, err}
	}()
}

func newZeroedFile(path string, size int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := 0; off < size && err == nil; off += len(zeros) {
		_, err = f.Write(zeros[:min(len(zeros), size-off)])
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// rotate closes the current segment and starts one at j.next, from the
// spare if one is ready or being made.
func (j *journal) rotate() error {
	if j.f != nil {
		if err := j.f.Close(); err != nil {
			return fmt.Errorf("journal: close segment: %w", err)
		}
		j.f = nil
	}
	if j.spare == nil {
		j.prepareSpare()
	}
	r := <-j.spare
	j.spare = nil
	if r.err != nil {
		return fmt.Errorf("journal: new segment: %w", r.err)
	}
	path := segmentPath(j.dir, j.next)
	err := os.Rename(filepath.Join(j.dir, spareName), path)
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		r.f.Close()
		return fmt.Errorf("journal: new segment: %w", err)
	}
	j.f, j.off = r.f, 0
	return nil
}

func (j *journal) close() error {
	var err error
	if j.spare != nil {
		if r := <-j.spare; r.f != nil {
			err = errors.Join(r.f.Close(), os.Remove(r.f.Name()))
		}
		j.spare = nil
	}
	if j.f != nil {
		err = errors.Join(err, j.f.Close())
		j.f = nil
	}
	return err
}

// syncDir makes the creation of files in dir durable.
func syncDir(dir string) error { return durable.SyncDir(dir) }
