package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A batch file holds the records of the items of one group commit, one
// after the other. A record is
//
//	custode-queue 1 <length of the header> <SHA-256 of the rest, hex>\n
//	<header: JSON>\n
//	<message>
//
// The checksum covers the header, its newline and the message, whose
// length the header gives (Size). An item file of the first layout of the
// queue, one item per file, is a batch of one record.
//
// A done file, named after its batch file with doneSuffix, holds one line
// per item of the batch that the queue is done with:
//
//	<kind> <ID> <CRC-32 of "<kind> <ID>", 8 hex digits>\n
//
// where kind is one of the markKind values.
const (
	magic        = "custode-queue 1"
	batchSuffix  = ".batch"
	doneSuffix   = ".done"
	itemSuffix   = ".item" // the first layout: one item per file
	stateSuffix  = ".state"
	seqDigits    = 16
	maxFirstLine = 128 // bounds the first line of a record
)

// A markKind says why an item of a batch is done.
type markKind byte

const (
	// markDone: delivered, or undeliverable. Not fsynced: lost, the item
	// is delivered again.
	markDone markKind = 'D'
	// markRemoved: taken back by Remove. Fsynced.
	markRemoved markKind = 'R'
	// markDamaged: the record was found damaged when read. Fsynced; the
	// batch file goes into damaged/ once its other items are done.
	markDamaged markKind = 'Q'
	// markMissing: the batch file vanished. Nothing is written.
	markMissing markKind = 0
)

// durable reports whether marks of kind k are fsynced.
func (k markKind) durable() bool { return k == markRemoved || k == markDamaged }

// fileHeader is the JSON header of a record.
type fileHeader struct {
	ID          string    `json:"id"`
	Destination string    `json:"destination"`
	Ref         string    `json:"ref,omitempty"`
	From        string    `json:"from"`
	To          []string  `json:"to"`
	Enqueued    time.Time `json:"enqueued"`
	NextAttempt time.Time `json:"next_attempt"`
	Size        int       `json:"size"`
}

// fileState is the content of a state file: what changes with attempts.
// Batch names the batch file of the item it belongs to (empty in the
// first layout), so that the state of an earlier item of the same ID is
// not taken for its own.
type fileState struct {
	ID          string    `json:"id"`
	Batch       string    `json:"batch,omitempty"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
}

// batchName returns the name of the batch file of sequence number seq.
func batchName(seq uint64) string {
	return fmt.Sprintf("%0*x%s", seqDigits, seq, batchSuffix)
}

// seqOf returns the sequence number of the batch file name, or ok false if
// name is not one.
func seqOf(name string) (seq uint64, ok bool) {
	base, found := strings.CutSuffix(name, batchSuffix)
	if !found || len(base) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(base, 16, 64)
	return seq, err == nil && seq > 0
}

// fileName returns the base name of id's file with suffix. IDs hold no
// "%" (see validID), so writing "/" as "%" is reversible.
func fileName(id, suffix string) string {
	return strings.ReplaceAll(id, "/", "%") + suffix
}

// idOf returns the ID whose file name is name, and the suffix (itemSuffix
// or stateSuffix), or ok false for a name that is not one.
func idOf(name string) (id, suffix string, ok bool) {
	for _, suffix := range []string{itemSuffix, stateSuffix} {
		if base, found := strings.CutSuffix(name, suffix); found {
			id := strings.ReplaceAll(base, "%", "/")
			if validID(id) != nil {
				return "", "", false
			}
			return id, suffix, true
		}
	}
	return "", "", false
}

// encodeItem returns what precedes it.Message in its record: the first
// line and the header.
func encodeItem(it *Item) ([]byte, error) {
	hdr, err := json.Marshal(fileHeader{
		ID:          it.ID,
		Destination: it.Destination,
		Ref:         it.Ref,
		From:        it.From,
		To:          it.To,
		Enqueued:    it.Enqueued.UTC(),
		NextAttempt: it.NextAttempt.UTC(),
		Size:        len(it.Message),
	})
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(hdr)
	h.Write([]byte{'\n'})
	h.Write(it.Message)
	b := fmt.Appendf(nil, "%s %d %x\n", magic, len(hdr), h.Sum(nil))
	b = append(b, hdr...)
	return append(b, '\n'), nil
}

// decodeRecord parses and verifies the record at the start of b, and
// returns its item and length. Bytes after the record are not looked at.
func decodeRecord(b []byte) (Item, int, error) {
	nl := bytes.IndexByte(b[:min(len(b), maxFirstLine)], '\n')
	if nl < 0 {
		return Item{}, 0, errors.New("no header line")
	}
	fields := strings.Fields(string(b[:nl]))
	if len(fields) != 4 || fields[0]+" "+fields[1] != magic {
		return Item{}, 0, fmt.Errorf("not a queue record (header line %q)", b[:nl])
	}
	hlen, err := strconv.Atoi(fields[2])
	rest := b[nl+1:]
	if err != nil || hlen <= 0 || hlen >= len(rest) {
		return Item{}, 0, fmt.Errorf("bad header length %q", fields[2])
	}
	want, err := hex.DecodeString(fields[3])
	if err != nil || len(want) != sha256.Size {
		return Item{}, 0, fmt.Errorf("bad checksum %q", fields[3])
	}
	if rest[hlen] != '\n' {
		return Item{}, 0, errors.New("header not followed by a newline")
	}
	// The size comes from a header not yet verified: the checksum, over
	// what it delimits, verifies it too.
	var h fileHeader
	if err := json.Unmarshal(rest[:hlen], &h); err != nil {
		return Item{}, 0, fmt.Errorf("damaged record: unreadable header: %v", err)
	}
	if h.Size < 0 || h.Size > len(rest)-hlen-1 {
		return Item{}, 0, fmt.Errorf("damaged or cut record: message of %d bytes, %d left", h.Size, len(rest)-hlen-1)
	}
	rest = rest[:hlen+1+h.Size]
	if got := sha256.Sum256(rest); !bytes.Equal(got[:], want) {
		return Item{}, 0, errors.New("checksum mismatch: the record is damaged")
	}
	it := Item{
		ID:          h.ID,
		Destination: h.Destination,
		Ref:         h.Ref,
		From:        h.From,
		To:          h.To,
		Message:     rest[hlen+1:],
		Enqueued:    h.Enqueued,
		NextAttempt: h.NextAttempt,
	}
	if err := it.validate(); err != nil {
		return Item{}, 0, err
	}
	return it, nl + 1 + len(rest), nil
}

// A record is an intact record found in a batch file.
type record struct {
	it     Item // Message nil
	off, n int64
}

// parseBatch returns the intact records of the content b of a batch file,
// and what is wrong with the rest of it, if anything. After a damaged
// stretch it looks for the next record, so that one damaged record does
// not hide the ones after it. If legacyID is not empty, b is an item file
// of the first layout, which must hold that item and nothing else.
func parseBatch(b []byte, legacyID string) (recs []record, damage []string) {
	if len(b) == 0 {
		return nil, []string{"no header line: empty file"}
	}
	start := []byte(magic + " ")
	for pos := 0; pos < len(b); {
		it, n, err := decodeRecord(b[pos:])
		if err == nil && legacyID != "" {
			switch {
			case it.ID != legacyID:
				err = fmt.Errorf("holds item %q", it.ID)
			case n != len(b):
				err = fmt.Errorf("%d bytes after the item", len(b)-n)
			}
		}
		if err == nil {
			it.Message = nil
			recs = append(recs, record{it: it, off: int64(pos), n: int64(n)})
			pos += n
			continue
		}
		damage = append(damage, fmt.Sprintf("at offset %d: %v", pos, err))
		next := bytes.Index(b[pos+1:], start)
		if next < 0 {
			break
		}
		pos += 1 + next
	}
	return recs, damage
}

// markLine returns the line of a done file marking id done with kind.
func markLine(kind markKind, id string) []byte {
	b := append([]byte{byte(kind), ' '}, id...)
	return fmt.Appendf(b, " %08x\n", crc32.ChecksumIEEE(b))
}

// parseDone returns the marks of the content b of a done file, and how
// many lines are damaged (a write cut by a crash, say).
func parseDone(b []byte) (marks map[string]markKind, bad int) {
	marks = map[string]markKind{}
	for line := range bytes.Lines(b) {
		line, complete := bytes.CutSuffix(line, []byte{'\n'})
		i := bytes.LastIndexByte(line, ' ')
		if !complete || len(line) < 3 || line[1] != ' ' || i < 2 {
			bad++
			continue
		}
		kind, id := markKind(line[0]), string(line[2:i])
		sum, err := strconv.ParseUint(string(line[i+1:]), 16, 32)
		if err != nil || uint32(sum) != crc32.ChecksumIEEE(line[:i]) ||
			(kind != markDone && kind != markRemoved && kind != markDamaged) || validID(id) != nil {
			bad++
			continue
		}
		if marks[id] == 0 || kind.durable() {
			marks[id] = kind
		}
	}
	return marks, bad
}

// decodeState parses the content of a state file.
func decodeState(b []byte) (fileState, error) {
	var s fileState
	if err := json.Unmarshal(b, &s); err != nil {
		return fileState{}, err
	}
	if s.Attempts < 0 {
		return fileState{}, fmt.Errorf("negative attempts %d", s.Attempts)
	}
	return s, nil
}

// writeTemp writes the concatenation of parts to a new file in dir and
// fsyncs it, returning its path. On error nothing is left behind.
func (q *Queue) writeTemp(dir, pattern string, parts ...[]byte) (path string, err error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
			path = ""
		}
	}()
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			return "", err
		}
	}
	if err := q.syncFile(f); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// appendFile appends b to the file path, created if needed, and fsyncs it
// if sync is set.
func (q *Queue) appendFile(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = q.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFile fsyncs f.
func (q *Queue) syncFile(f *os.File) error {
	q.syncs.Add(1)
	return f.Sync()
}

// syncDir fsyncs directory dir, making the creation, renaming and removal
// of its entries durable.
func (q *Queue) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = q.syncFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeIfExists removes path; a path already gone is not an error.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// freeName returns a path in dir for name that no file has, adding a
// numeric suffix if needed.
func freeName(dir, name string) string {
	p := filepath.Join(dir, name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(p); err != nil {
			return p // absent, or an error that the rename will report
		}
		p = filepath.Join(dir, fmt.Sprintf("%s.%d", name, i))
	}
}
