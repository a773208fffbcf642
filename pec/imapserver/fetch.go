package imapserver

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/custode/custode/pec/mailstore"
)

// item is a message of the selected folder named by a command.
type item struct {
	seq, uid uint32
}

// resolveSet returns the messages of the client's view that numSet names,
// in sequence order. "*" is the last message (or its UID); numbers naming no
// message are ignored.
func (s *session) resolveSet(numSet imap.NumSet) ([]item, error) {
	if imap.IsSearchRes(numSet) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "SEARCHRES is not supported"}
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		return s.resolveSeq(set), nil
	case imap.UIDSet:
		return s.resolve(set), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Bad message set"}
}

func (s *session) resolveUIDs(numSet imap.NumSet) ([]uint32, error) {
	items, err := s.resolveSet(numSet)
	if err != nil {
		return nil, err
	}
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = it.uid
	}
	return uids, nil
}

func (s *session) resolveSeq(set imap.SeqSet) []item {
	n := uint32(len(s.sel.uids))
	spans := make([]span, 0, len(set))
	for _, r := range set {
		start, stop := static(r.Start, r.Stop, n)
		if start == 0 {
			start = 1
		}
		if start > n {
			continue
		}
		spans = append(spans, span{int(start - 1), int(min(stop, n))})
	}
	return s.collect(spans)
}

func (s *session) resolve(set imap.UIDSet) []item {
	uids := s.sel.uids
	var last uint32
	if len(uids) > 0 {
		last = uids[len(uids)-1]
	}
	spans := make([]span, 0, len(set))
	for _, r := range set {
		start, stop := static(uint32(r.Start), uint32(r.Stop), last)
		lo, _ := slices.BinarySearch(uids, start)
		hi := sort.Search(len(uids), func(i int) bool { return uids[i] > stop })
		if lo < hi {
			spans = append(spans, span{lo, hi})
		}
	}
	return s.collect(spans)
}

// span is a range of indexes of the view, hi excluded.
type span struct{ lo, hi int }

// collect returns the messages of the spans, merged, in sequence order. Its
// cost is bounded by the size of the view whatever the ranges.
func (s *session) collect(spans []span) []item {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var out []item
	next := 0
	for _, sp := range spans {
		for i := max(sp.lo, next); i < sp.hi; i++ {
			out = append(out, item{seq: uint32(i + 1), uid: s.sel.uids[i]})
		}
		next = max(next, sp.hi)
	}
	return out
}

// static replaces "*" (0) in a range by max and orders it, as RFC 9051
// says: "559:*" includes the last message even if it is below 559.
func static(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

// Fetch implements goimapserver.Session.
func (s *session) Fetch(w *goimapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return err
	}
	if options.ModSeq || options.ChangedSince != 0 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "CONDSTORE is not supported"}
	}
	items, err := s.resolveSet(numSet)
	if err != nil || len(items) == 0 {
		return err
	}
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = it.uid
	}
	ctx := s.ctx()
	list, err := s.srv.store.MessagesByUID(ctx, s.addr, sel.name, uids)
	if err != nil {
		return s.storeErr("fetch", err)
	}
	msgs := make(map[uint32]mailstore.Message, len(list))
	for _, m := range list {
		msgs[m.UID] = m
	}

	// Reading a body without PEEK sets \Seen, and the client is told.
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	for _, bs := range options.BinarySection {
		markSeen = markSeen || !bs.Peek
	}
	seenNow := map[uint32]bool{}
	if markSeen && !sel.readOnly {
		var unseen []uint32
		for _, m := range list {
			if !m.HasFlag(mailstore.FlagSeen) {
				unseen = append(unseen, m.UID)
			}
		}
		if len(unseen) > 0 {
			updated, err := s.srv.store.StoreFlags(ctx, s.addr, sel.name, unseen, mailstore.AddFlags, []string{mailstore.FlagSeen})
			if err != nil {
				return s.storeErr("fetch", err)
			}
			for _, m := range updated {
				msgs[m.UID] = m
				seenNow[m.UID] = true
				s.self[m.UID] = flagKey(m.Flags)
			}
		}
	}

	for _, it := range items {
		m, ok := msgs[it.uid]
		if !ok {
			continue // expunged meanwhile
		}
		if err := s.fetchOne(w, sel, it.seq, m, options, seenNow[it.uid]); err != nil {
			return err
		}
	}
	return nil
}

// fetchOne writes the FETCH response of one message.
func (s *session) fetchOne(w *goimapserver.FetchWriter, sel *selected, seq uint32, m mailstore.Message, options *imap.FetchOptions, flagsChanged bool) error {
	ctx := s.ctx()
	needBody := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	needHeader := options.Envelope
	for _, bs := range options.BodySection {
		if headerOnly(bs) {
			needHeader = true
		} else {
			needBody = true
		}
	}
	var header, body []byte
	var err error
	if needHeader {
		if header, err = s.srv.store.Header(ctx, s.addr, sel.name, m.UID); err != nil {
			if errors.Is(err, mailstore.ErrNoSuchMessage) {
				return nil
			}
			return s.storeErr("fetch", err)
		}
	}
	if needBody {
		if body, err = s.srv.store.Body(ctx, s.addr, sel.name, m.UID); err != nil {
			if errors.Is(err, mailstore.ErrNoSuchMessage) {
				return nil
			}
			return s.storeErr("fetch", err)
		}
	}

	// Compute everything before writing: the writer holds the connection.
	var env *imap.Envelope
	if options.Envelope {
		env = goimapserver.ExtractEnvelope(parseHeader(header))
	}
	var bstruct imap.BodyStructure
	if options.BodyStructure != nil {
		bstruct = bodyStructure(body)
	}
	// Parts nested deeper than maxDepth are answered empty: reaching them
	// costs a pass over the message per level.
	sections := make([][]byte, len(options.BodySection))
	for i, bs := range options.BodySection {
		if len(bs.Part) <= maxDepth {
			sections[i] = bodySection(header, body, bs)
		}
	}
	binaries := make([][]byte, len(options.BinarySection))
	for i, bs := range options.BinarySection {
		if len(bs.Part) <= maxDepth {
			binaries[i] = goimapserver.ExtractBinarySection(bytes.NewReader(body), bs)
		}
	}
	binSizes := make([]uint32, len(options.BinarySectionSize))
	for i, bss := range options.BinarySectionSize {
		if len(bss.Part) <= maxDepth {
			binSizes[i] = goimapserver.ExtractBinarySectionSize(bytes.NewReader(body), bss)
		}
	}

	rw := w.CreateMessage(seq)
	rw.WriteUID(imap.UID(m.UID))
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.Time)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bstruct)
	}
	var werr error
	for i, bs := range options.BodySection {
		werr = errors.Join(werr, writeLiteral(rw.WriteBodySection(bs, int64(len(sections[i]))), sections[i]))
	}
	for i, bs := range options.BinarySection {
		werr = errors.Join(werr, writeLiteral(rw.WriteBinarySection(bs, int64(len(binaries[i]))), binaries[i]))
	}
	for i, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, binSizes[i])
	}
	return errors.Join(werr, rw.Close())
}

type writeCloser interface {
	Write([]byte) (int, error)
	Close() error
}

func writeLiteral(wc writeCloser, b []byte) error {
	_, err := wc.Write(b)
	return errors.Join(err, wc.Close())
}

// headerOnly reports whether a section is read from the header alone.
func headerOnly(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierHeader
}

// bodySection returns a section of the message. BODY[], BODY[HEADER] and
// BODY[TEXT] are the stored bytes themselves (so BODY[] is byte-identical
// to what was delivered); the others are extracted by go-imap.
func bodySection(header, body []byte, bs *imap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 {
		switch {
		case bs.Specifier == imap.PartSpecifierNone:
			return partial(body, bs.Partial)
		case bs.Specifier == imap.PartSpecifierHeader && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0:
			return partial(header, bs.Partial)
		case bs.Specifier == imap.PartSpecifierText:
			return partial(body[len(mailstore.HeaderSection(body)):], bs.Partial)
		case bs.Specifier == imap.PartSpecifierHeader:
			return goimapserver.ExtractBodySection(bytes.NewReader(header), bs)
		}
	}
	return goimapserver.ExtractBodySection(bytes.NewReader(body), bs)
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset < 0 || p.Offset >= int64(len(b)) {
		return nil
	}
	end := int64(len(b))
	if p.Size >= 0 && p.Offset+p.Size < end {
		end = p.Offset + p.Size
	}
	return b[p.Offset:end]
}

func parseHeader(b []byte) textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		return textproto.Header{}
	}
	return h
}
