package ledger

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custode/custode/tsa"
	"github.com/dgraph-io/badger/v4"
	"github.com/transparency-dev/merkle/compact"
)

// A Segment is a sealed range of the ledger, complete enough to be checked
// alone and to rebuild the ledger from: entries [From, To) in their
// canonical bytes, the compact range of the tree over entries [0, From) (the
// proof material that links it to the segments before it), and the signed,
// timestamped checkpoint of size To that covers it.
//
// Its byte form (MarshalBinary) is the line "custode-segment/1", a line of
// JSON (from, to, start as hex hashes, and the checkpoint's body, signature
// and token in base64), then To-From entries, each a big-endian uint32
// length and the canonical bytes.
type Segment struct {
	From, To   uint64
	Start      [][]byte // hashes of the compact range [0, From), left to right
	Entries    [][]byte
	Checkpoint *Checkpoint
}

const segmentMagic = "custode-segment/1\n"

// maxSegmentHeader bounds the JSON line of a segment.
const maxSegmentHeader = 1 << 20

type segmentHeader struct {
	From       uint64           `json:"from"`
	To         uint64           `json:"to"`
	Start      []string         `json:"start"`
	Checkpoint checkpointRecord `json:"checkpoint"`
}

// MarshalBinary returns the segment's byte form.
func (s *Segment) MarshalBinary() ([]byte, error) {
	if s.Checkpoint == nil || uint64(len(s.Entries)) != s.To-s.From {
		return nil, fmt.Errorf("ledger: segment %d-%d: incomplete", s.From, s.To)
	}
	h := segmentHeader{From: s.From, To: s.To, Start: make([]string, len(s.Start)),
		Checkpoint: checkpointRecord{Body: s.Checkpoint.Body, Signature: s.Checkpoint.Signature, Token: s.Checkpoint.Token}}
	for i, b := range s.Start {
		h.Start[i] = hex.EncodeToString(b)
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	n := len(segmentMagic) + len(hj) + 1
	for _, e := range s.Entries {
		n += 4 + len(e)
	}
	b := make([]byte, 0, n)
	b = append(b, segmentMagic...)
	b = append(b, hj...)
	b = append(b, '\n')
	for _, e := range s.Entries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

// ParseSegment reads a segment's byte form. It checks the framing only;
// Check verifies the contents.
func ParseSegment(b []byte) (*Segment, error) {
	rest, ok := bytes.CutPrefix(b, []byte(segmentMagic))
	if !ok {
		return nil, errors.New("ledger: segment: not a custode segment")
	}
	line, _, ok := bytes.Cut(rest[:min(len(rest), maxSegmentHeader)], []byte("\n"))
	if !ok {
		return nil, errors.New("ledger: segment: header line missing or too long")
	}
	rest = b[len(segmentMagic)+len(line)+1:]
	var h segmentHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("ledger: segment: header: %w", err)
	}
	if canon, err := json.Marshal(h); err != nil || !bytes.Equal(canon, line) {
		return nil, fmt.Errorf("ledger: segment: header: %w", errNotCanonical)
	}
	if h.To < h.From || h.To-h.From > uint64(len(rest))/4 {
		return nil, fmt.Errorf("ledger: segment: range %d-%d does not fit its %d bytes", h.From, h.To, len(rest))
	}
	s := &Segment{From: h.From, To: h.To}
	for i, x := range h.Start {
		v, err := hex.DecodeString(x)
		if err != nil || len(v) != 32 || hex.EncodeToString(v) != x {
			return nil, fmt.Errorf("ledger: segment: start hash %d is not 32 bytes in lower-case hex", i)
		}
		s.Start = append(s.Start, v)
	}
	c, err := ParseCheckpointBody(h.Checkpoint.Body)
	if err != nil {
		return nil, fmt.Errorf("ledger: segment: %w", err)
	}
	c.Signature, c.Token = h.Checkpoint.Signature, h.Checkpoint.Token
	s.Checkpoint = c
	s.Entries = make([][]byte, 0, h.To-h.From)
	for seq := h.From; seq < h.To; seq++ {
		if len(rest) < 4 || uint64(binary.BigEndian.Uint32(rest)) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("ledger: segment: entry %d cut short", seq)
		}
		n := binary.BigEndian.Uint32(rest)
		s.Entries = append(s.Entries, rest[4:4+n])
		rest = rest[4+n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("ledger: segment: %d bytes after entry %d", len(rest), h.To-1)
	}
	return s, nil
}

// SegmentEnd is what a checked segment hands to the next one: the leaf hash
// of its last entry and the compact range up to its end.
type SegmentEnd struct {
	Size  uint64
	Last  [32]byte
	Range [][]byte
}

// Check verifies a segment against itself and, when prev is not nil,
// against the end of the segment before it: sequence numbers, the chain of
// prev hashes, and the tree root at To against the checkpoint's. It does not
// check the checkpoint's signature and token: see Checkpoint.Verify.
func (s *Segment) Check(prev *SegmentEnd) (*SegmentEnd, error) {
	fail := func(format string, a ...any) (*SegmentEnd, error) {
		return nil, fmt.Errorf("ledger: segment %d-%d: %s", s.From, s.To, fmt.Sprintf(format, a...))
	}
	if s.Checkpoint == nil || s.Checkpoint.Size != s.To {
		return fail("its checkpoint does not cover size %d", s.To)
	}
	rf := &compact.RangeFactory{Hash: hashChildren}
	// The range writes into the slice it is given.
	rng, err := rf.NewRange(0, s.From, slices.Clone(s.Start))
	if err != nil {
		return fail("start range: %v", err)
	}
	var last [32]byte
	if prev != nil {
		if prev.Size != s.From {
			return fail("follows a segment ending at %d", prev.Size)
		}
		if !sameHashes(prev.Range, s.Start) {
			return fail("its start range differs from the end of the segment before it")
		}
		last = prev.Last
	}
	for i, raw := range s.Entries {
		seq := s.From + uint64(i)
		e, err := DecodeEntry(raw)
		if err != nil {
			return fail("entry %d: %v", seq, err)
		}
		if e.Seq != seq {
			return fail("entry %d says seq %d", seq, e.Seq)
		}
		if (prev != nil || i > 0 || s.From == 0) && e.Prev != last {
			return fail("entry %d: prev does not match entry %d", seq, int64(seq)-1)
		}
		leaf := LeafHash(raw) // the range keeps the slice: a new array each time
		if err := rng.Append(leaf[:], nil); err != nil {
			return fail("entry %d: %v", seq, err)
		}
		last = leaf
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fail("root: %v", err)
	}
	if !bytes.Equal(root, s.Checkpoint.Root[:]) {
		return fail("root of the entries %x does not match the checkpoint's %x", root[:8], s.Checkpoint.Root[:8])
	}
	return &SegmentEnd{Size: s.To, Last: last, Range: rng.Hashes()}, nil
}

func sameHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Verify checks the checkpoint's CMS signature against roots and its RFC
// 3161 token against tsaRoots. A pending checkpoint fails.
func (c *Checkpoint) Verify(roots, tsaRoots *x509.CertPool) error {
	if _, err := VerifyDetached(c.Body, c.Signature, roots, nil, c.Time); err != nil {
		return fmt.Errorf("ledger: checkpoint %d: signature: %w", c.Size, err)
	}
	if c.Pending() {
		return fmt.Errorf("ledger: checkpoint %d: no timestamp token", c.Size)
	}
	sum := c.Hash()
	info, err := tsa.Verify(c.Token, sum[:], tsa.VerifyOptions{Roots: tsaRoots})
	if err != nil {
		return fmt.Errorf("ledger: checkpoint %d: timestamp: %w", c.Size, err)
	}
	if info.GenTime.Before(c.Time.Add(-time.Minute)) {
		return fmt.Errorf("ledger: checkpoint %d: timestamp %s is before the checkpoint time %s", c.Size, info.GenTime, c.Time)
	}
	return nil
}

// Segment returns entries [from, to) as a segment, with the checkpoint of
// size to, which must exist.
func (l *Ledger) Segment(ctx context.Context, from, to uint64) (*Segment, error) {
	if from >= to || to > l.Head().Size {
		return nil, fmt.Errorf("ledger: segment %d-%d: outside the ledger of %d entries", from, to, l.Head().Size)
	}
	s := &Segment{From: from, To: to}
	if err := l.waitApplied(ctx, to); err != nil {
		return nil, fmt.Errorf("ledger: segment %d-%d: %w", from, to, err)
	}
	err := l.db.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, checkpointKey(to))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("no checkpoint of size %d", to)
		}
		if err != nil {
			return err
		}
		if s.Checkpoint, err = decodeCheckpointRecord(v); err != nil {
			return err
		}
		for _, id := range compact.RangeNodes(0, from, nil) {
			h, err := l.subtreeHash(txn, id)
			if err != nil {
				return err
			}
			s.Start = append(s.Start, h)
		}
		return nil
	})
	if err == nil {
		err = l.scanEntries(ctx, from, to, func(seq uint64, raw []byte) error {
			if leaf, by, ok := parsePurged(raw); ok {
				return &PurgedError{Seq: seq, By: by, Leaf: leaf}
			}
			s.Entries = append(s.Entries, raw)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: segment %d-%d: %w", from, to, err)
	}
	return s, nil
}

// Seal records where a segment was archived.
type Seal struct {
	From        uint64    `json:"from"`
	To          uint64    `json:"to"`
	Key         string    `json:"key"`
	VersionID   string    `json:"version_id"`
	SHA256      string    `json:"sha256"` // hex, of the segment's bytes
	RetainUntil time.Time `json:"retain_until"`
	Sealed      time.Time `json:"sealed"`
}

const prefixSeal = 's' // s to(8) -> Seal JSON

func sealKey(to uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixSeal}, to)
}

// RecordSeal records, durably, that segment [s.From, s.To) was archived.
// Seals are recorded in order: s.From must be where the last seal ended.
func (l *Ledger) RecordSeal(ctx context.Context, s Seal) error {
	if l.readOnly {
		return ErrReadOnly
	}
	last, err := l.LastSeal(ctx)
	if err != nil {
		return err
	}
	if want := sealEnd(last); s.From != want || s.To <= s.From {
		return fmt.Errorf("ledger: record seal %d-%d: the last seal ends at %d", s.From, s.To, want)
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(sealKey(s.To), v) }); err != nil {
		return fmt.Errorf("ledger: record seal %d-%d: %w", s.From, s.To, err)
	}
	if err := l.db.Sync(); err != nil {
		return fmt.Errorf("ledger: record seal %d-%d: %w", s.From, s.To, err)
	}
	return nil
}

func sealEnd(s *Seal) uint64 {
	if s == nil {
		return 0
	}
	return s.To
}

// Seals returns the recorded seals in order. It reads them all: a
// consumer that needs the seals from a position on uses SealsFrom.
func (l *Ledger) Seals(ctx context.Context) ([]Seal, error) {
	var seals []Seal
	for s, err := range l.SealsFrom(ctx, 0) {
		if err != nil {
			return nil, err
		}
		seals = append(seals, s)
	}
	return seals, nil
}

// LastSeal returns the last recorded seal, or nil if there is none.
func (l *Ledger) LastSeal(ctx context.Context) (*Seal, error) {
	var last *Seal
	err := l.db.View(func(txn *badger.Txn) error {
		v, err := lastValue(txn, prefixSeal)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		last = new(Seal)
		return json.Unmarshal(v, last)
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: last seal: %w", err)
	}
	return last, ctx.Err()
}

// Import appends a checked segment's entries, byte for byte, and its
// checkpoint to a ledger whose size is s.From: the way a lost store is
// rebuilt from the archive. Call s.Check first.
func (l *Ledger) Import(ctx context.Context, s *Segment) error {
	if l.readOnly {
		return ErrReadOnly
	}
	done := make(chan error, 1)
	select {
	case l.imports <- importReq{s, done}:
	case <-l.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-l.stopped:
		return ErrClosed
	}
}

type importReq struct {
	s    *Segment
	done chan error
}

// importSegment runs in the committer, with seqMu held and no group open.
func (l *Ledger) importSegment(s *Segment) error {
	if s.From != l.size {
		return fmt.Errorf("ledger: import segment %d-%d: the ledger has %d entries", s.From, s.To, l.size)
	}
	if err := l.jnl.append(encodeJournalRecord(s.From, s.Entries), len(s.Entries)); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	if err := l.replay(context.Background(), []journalRecord{{first: s.From, entries: s.Entries}}); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	l.mu.Lock()
	head := l.head
	l.mu.Unlock()
	if head.Root != s.Checkpoint.Root {
		return fmt.Errorf("ledger: import segment %d-%d: root %x does not match the checkpoint", s.From, s.To, head.Root[:8])
	}
	if err := l.putCheckpoint(s.Checkpoint); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	var ps []posting
	for i, raw := range s.Entries {
		e, err := DecodeEntry(raw)
		if err != nil {
			return fmt.Errorf("ledger: import segment %d-%d: entry %d: %w", s.From, s.To, s.From+uint64(i), err)
		}
		for _, p := range indexTerms(&e.Event) {
			p.seq = s.From + uint64(i)
			ps = append(ps, p)
		}
	}
	l.queueIndex(indexWork{postings: ps, upTo: s.To})
	return nil
}
