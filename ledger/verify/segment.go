package verify

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"

	"github.com/custode/custode/ledger/evidence"
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

// SegmentMagic is the first line of a segment's byte form.
const SegmentMagic = "custode-segment/1\n"

// maxSegmentHeader bounds the JSON line of a segment.
const maxSegmentHeader = 1 << 20

// checkpointRecord is a checkpoint in a segment's header, as the ledger
// stores it (FORMAT.md).
type checkpointRecord struct {
	Body      []byte `json:"body"`
	Signature []byte `json:"signature"`
	Token     []byte `json:"token,omitempty"`
}

type segmentHeader struct {
	From       uint64           `json:"from"`
	To         uint64           `json:"to"`
	Start      []string         `json:"start"`
	Checkpoint checkpointRecord `json:"checkpoint"`
}

// MarshalBinary returns the segment's byte form.
func (s *Segment) MarshalBinary() ([]byte, error) {
	if s.Checkpoint == nil || uint64(len(s.Entries)) != s.To-s.From {
		return nil, fmt.Errorf("verify: segment %d-%d: incomplete", s.From, s.To)
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
	n := len(SegmentMagic) + len(hj) + 1
	for _, e := range s.Entries {
		n += 4 + len(e)
	}
	b := make([]byte, 0, n)
	b = append(b, SegmentMagic...)
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
	rest, ok := bytes.CutPrefix(b, []byte(SegmentMagic))
	if !ok {
		return nil, errors.New("verify: segment: not a custode segment")
	}
	line, _, ok := bytes.Cut(rest[:min(len(rest), maxSegmentHeader)], []byte("\n"))
	if !ok {
		return nil, errors.New("verify: segment: header line missing or too long")
	}
	rest = b[len(SegmentMagic)+len(line)+1:]
	var h segmentHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("verify: segment: header: %w", err)
	}
	if canon, err := json.Marshal(h); err != nil || !bytes.Equal(canon, line) {
		return nil, fmt.Errorf("verify: segment: header: %w", evidence.ErrNotCanonical)
	}
	if h.To < h.From || h.To-h.From > uint64(len(rest))/4 {
		return nil, fmt.Errorf("verify: segment: range %d-%d does not fit its %d bytes", h.From, h.To, len(rest))
	}
	s := &Segment{From: h.From, To: h.To}
	for i, x := range h.Start {
		v, err := hex.DecodeString(x)
		if err != nil || len(v) != 32 || hex.EncodeToString(v) != x {
			return nil, fmt.Errorf("verify: segment: start hash %d is not 32 bytes in lower-case hex", i)
		}
		s.Start = append(s.Start, v)
	}
	c, err := ParseCheckpointBody(h.Checkpoint.Body)
	if err != nil {
		return nil, fmt.Errorf("verify: segment: %w", err)
	}
	c.Signature, c.Token = h.Checkpoint.Signature, h.Checkpoint.Token
	s.Checkpoint = c
	s.Entries = make([][]byte, 0, h.To-h.From)
	for seq := h.From; seq < h.To; seq++ {
		if len(rest) < 4 || uint64(binary.BigEndian.Uint32(rest)) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("verify: segment: entry %d cut short", seq)
		}
		n := binary.BigEndian.Uint32(rest)
		s.Entries = append(s.Entries, rest[4:4+n])
		rest = rest[4+n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("verify: segment: %d bytes after entry %d", len(rest), h.To-1)
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
// prev hashes (Chain), and the tree root at To against the checkpoint's. It
// does not check the checkpoint's signature and token: see
// Checkpoint.Verify.
func (s *Segment) Check(prev *SegmentEnd) (*SegmentEnd, error) {
	fail := func(format string, a ...any) (*SegmentEnd, error) {
		return nil, fmt.Errorf("verify: segment %d-%d: %s", s.From, s.To, fmt.Sprintf(format, a...))
	}
	if s.Checkpoint == nil || s.Checkpoint.Size != s.To {
		return fail("its checkpoint does not cover size %d", s.To)
	}
	if uint64(len(s.Entries)) != s.To-s.From {
		return fail("%d entries, want %d", len(s.Entries), s.To-s.From)
	}
	rf := &compact.RangeFactory{Hash: HashChildren}
	// The range writes into the slice it is given.
	rng, err := rf.NewRange(0, s.From, slices.Clone(s.Start))
	if err != nil {
		return fail("start range: %v", err)
	}
	var last *[32]byte
	if prev != nil {
		if prev.Size != s.From {
			return fail("follows a segment ending at %d", prev.Size)
		}
		if !sameHashes(prev.Range, s.Start) {
			return fail("its start range differs from the end of the segment before it")
		}
		last = &prev.Last
	}
	leaves, err := chain(s.From, last, s.Entries)
	if err != nil {
		return fail("%v", err)
	}
	end := &SegmentEnd{Size: s.To}
	if prev != nil {
		end.Last = prev.Last
	}
	for i := range leaves {
		leaf := leaves[i] // the range keeps the slice: a new array each time
		if err := rng.Append(leaf[:], nil); err != nil {
			return fail("entry %d: %v", s.From+uint64(i), err)
		}
		end.Last = leaf
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fail("root: %v", err)
	}
	if !bytes.Equal(root, s.Checkpoint.Root[:]) {
		return fail("root of the entries %x does not match the checkpoint's %x", root[:8], s.Checkpoint.Root[:8])
	}
	end.Range = rng.Hashes()
	return end, nil
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
