package imapserver

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/custode/custode/pec/mailstore"
)

// Limits on the parsing SEARCH BODY and TEXT do.
const (
	maxSearchDepth = 20
	maxSearchParts = 1000
	maxSearchBytes = 64 << 20
)

// Search implements goimapserver.Session. It evaluates the criteria on the
// messages of the client's view.
func (s *session) Search(kind goimapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return nil, err
	}
	if options != nil && options.ReturnSave {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unsupported SEARCH return option"}
	}
	if err := checkCriteria(criteria); err != nil {
		return nil, err
	}
	_, list, err := s.srv.store.Messages(s.ctx(), s.addr, sel.name)
	if err != nil {
		return nil, s.storeErr("search", err)
	}
	msgs := make(map[uint32]mailstore.Message, len(list))
	for _, m := range list {
		msgs[m.UID] = m
	}
	var last uint32
	if len(sel.uids) > 0 {
		last = sel.uids[len(sel.uids)-1]
	}
	n := uint32(len(sel.uids))
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i, uid := range sel.uids {
		m, ok := msgs[uid]
		if !ok {
			continue // expunged, not yet announced
		}
		sm := &searchMsg{s: s, folder: sel.name, seq: uint32(i + 1), n: n, last: last, m: m}
		match := sm.match(criteria)
		if sm.err != nil {
			return nil, s.storeErr("search", sm.err)
		}
		if !match {
			continue
		}
		num := sm.seq
		if kind == goimapserver.NumKindUID {
			num = uid
			uids.AddNum(imap.UID(uid))
		} else {
			seqs.AddNum(sm.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == goimapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

// checkCriteria refuses what is not supported (CONDSTORE, SEARCHRES).
func checkCriteria(c *imap.SearchCriteria) error {
	if c.ModSeq != nil {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "CONDSTORE is not supported"}
	}
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "SEARCHRES is not supported"}
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "SEARCHRES is not supported"}
		}
	}
	for i := range c.Not {
		if err := checkCriteria(&c.Not[i]); err != nil {
			return err
		}
	}
	for i := range c.Or {
		for j := range c.Or[i] {
			if err := checkCriteria(&c.Or[i][j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// searchMsg is a message being matched; its header and body are read once,
// when a criterion needs them.
type searchMsg struct {
	s       *session
	folder  string
	seq, n  uint32 // sequence number, messages in the view
	last    uint32 // highest UID in the view
	m       mailstore.Message
	header  *mail.Header
	body    []byte
	gotBody bool
	err     error // first store error; the search fails with it
}

func (sm *searchMsg) getHeader() *mail.Header {
	if sm.header == nil {
		b, err := sm.s.srv.store.Header(sm.s.ctx(), sm.s.addr, sm.folder, sm.m.UID)
		if err != nil && !errors.Is(err, mailstore.ErrNoSuchMessage) && sm.err == nil {
			sm.err = err
		}
		h := mail.Header{Header: gomessage.Header{Header: parseHeader(b)}}
		sm.header = &h
	}
	return sm.header
}

func (sm *searchMsg) getBody() []byte {
	if !sm.gotBody {
		sm.gotBody = true
		b, err := sm.s.srv.store.Body(sm.s.ctx(), sm.s.addr, sm.folder, sm.m.UID)
		if err != nil && !errors.Is(err, mailstore.ErrNoSuchMessage) && sm.err == nil {
			sm.err = err
		}
		sm.body = b
	}
	return sm.body
}

// match reports whether the message meets all of c.
func (sm *searchMsg) match(c *imap.SearchCriteria) bool {
	if sm.err != nil {
		return false
	}
	for _, set := range c.SeqNum {
		if !inRanges(sm.seq, sm.n, len(set), func(i int) (uint32, uint32) { return set[i].Start, set[i].Stop }) {
			return false
		}
	}
	for _, set := range c.UID {
		if !inRanges(sm.m.UID, sm.last, len(set), func(i int) (uint32, uint32) { return uint32(set[i].Start), uint32(set[i].Stop) }) {
			return false
		}
	}
	if !matchDate(sm.m.Time, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if strings.EqualFold(string(f), `\Recent`) || !sm.m.HasFlag(string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if sm.m.HasFlag(string(f)) {
			return false
		}
	}
	if c.Larger != 0 && sm.m.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && sm.m.Size >= c.Smaller {
		return false
	}
	for _, hf := range c.Header {
		if !matchHeader(sm.getHeader(), hf.Key, hf.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		t, err := sm.getHeader().Date()
		if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, text := range c.Body {
		if !sm.matchBody(text, false) {
			return false
		}
	}
	for _, text := range c.Text {
		if !sm.matchBody(text, true) {
			return false
		}
	}
	for i := range c.Not {
		if sm.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !sm.match(&c.Or[i][0]) && !sm.match(&c.Or[i][1]) {
			return false
		}
	}
	return sm.err == nil
}

// inRanges reports whether num is in one of n ranges, "*" standing for max.
func inRanges(num, max uint32, n int, rng func(int) (uint32, uint32)) bool {
	for i := range n {
		start, stop := rng(i)
		start, stop = static(start, stop, max)
		if num >= start && num <= stop {
			return true
		}
	}
	return false
}

// matchDate compares dates only, as RFC 9051 says: the time and zone of
// since and before are ignored, and t's date is taken in its own zone.
func matchDate(t, since, before time.Time) bool {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && day.Before(time.Date(since.Year(), since.Month(), since.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	if !before.IsZero() && !day.Before(time.Date(before.Year(), before.Month(), before.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	return true
}

// matchHeader reports whether a field named key contains value (decoded,
// case-insensitively); an empty value matches any message with the field.
func matchHeader(h *mail.Header, key, value string) bool {
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) {
			return true
		}
	}
	return false
}

// matchBody searches the text of the message (its text parts, decoded from
// their transfer encoding, through nested messages), and with header its
// header fields too.
func (sm *searchMsg) matchBody(text string, header bool) bool {
	if text == "" {
		return true
	}
	body := sm.getBody()
	if sm.err != nil || body == nil {
		return false
	}
	e, _ := gomessage.Read(bytes.NewReader(body))
	if e == nil {
		return false
	}
	budget := maxSearchParts
	return matchEntity(e, strings.ToLower(text), header, 0, &budget)
}

func matchEntity(e *gomessage.Entity, text string, header bool, depth int, budget *int) bool {
	if header {
		for f := e.Header.Fields(); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if strings.Contains(strings.ToLower(f.Key()+": "+v), text) {
				return true
			}
		}
	}
	if depth > maxSearchDepth || *budget <= 0 {
		return false
	}
	*budget--
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
				return false
			}
			if matchEntity(p, text, header, depth+1, budget) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	switch {
	case t == "" || strings.HasPrefix(t, "text/"):
		b, err := io.ReadAll(io.LimitReader(e.Body, maxSearchBytes))
		if err != nil && len(b) == 0 {
			return false
		}
		return bytes.Contains(bytes.ToLower(b), []byte(text))
	case t == "message/rfc822" || t == "message/global":
		sub, _ := gomessage.Read(io.LimitReader(e.Body, maxSearchBytes))
		return sub != nil && matchEntity(sub, text, header, depth+1, budget)
	}
	return false
}
