package imapserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"

	"github.com/custode/custode/pec/connlimit"
	"github.com/custode/custode/pec/mailstore"
)

// maxQueue bounds the changes a session holds for its client; past it the
// client is disconnected (it would need to resynchronise anyway).
const maxQueue = 100_000

var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// session is one IMAP connection.
type session struct {
	srv    *Server
	conn   *goimapserver.Conn
	remote string
	log    *slog.Logger

	// opMu serialises the session's commands and its IDLE updates: go-imap
	// can start the next command before an IDLE goroutine has returned.
	opMu sync.Mutex
	addr string // after login
	sel  *selected
	// self holds the flags this session itself just set, by UID, so that
	// the echo of its own change is not announced again.
	self map[uint32]string

	// mu guards the fields below, written by Store.Watch callbacks.
	mu        sync.Mutex
	stopWatch func()
	watching  bool   // a folder is selected
	watchUV   uint32 // its UIDVALIDITY, 0 while selecting
	queue     []mailstore.Change
	overflow  bool
	wake      chan struct{}
}

// selected is the client's view of its selected folder.
type selected struct {
	name        string
	uidValidity uint32
	readOnly    bool
	deleted     bool
	// uids are the UIDs of the messages, ascending: uids[i] is sequence
	// number i+1 as the client knows it.
	uids []uint32
}

var (
	_ goimapserver.Session            = (*session)(nil)
	_ goimapserver.SessionMove        = (*session)(nil)
	_ goimapserver.SessionNamespace   = (*session)(nil)
	_ goimapserver.SessionAppendLimit = (*session)(nil)
)

func (s *session) ctx() context.Context { return s.srv.ctx }

// Close implements goimapserver.Session.
func (s *session) Close() error {
	s.mu.Lock()
	stop := s.stopWatch
	s.stopWatch = nil
	s.watching = false
	s.queue = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// Login implements goimapserver.Session.
func (s *session) Login(username, password string) error {
	err := s.srv.store.Login(s.ctx(), mailstore.LoginAttempt{Service: mailstore.ServiceIMAP, Address: username, Password: password, Remote: s.remote})
	var te *mailstore.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &te):
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Too many failed login attempts from your address: try again in %d seconds", int((te.RetryAfter+time.Second-1)/time.Second)),
		}
	case errors.Is(err, mailstore.ErrAuthFailed):
		return goimapserver.ErrAuthFailed
	default:
		return s.storeErr("login", err)
	}
	addr, err := mailstore.NormalizeAddress(username)
	if err != nil {
		return s.internal("login", err)
	}
	stop, err := s.srv.store.Watch(addr, s.onChange)
	if err != nil {
		return s.internal("login", err)
	}
	s.opMu.Lock()
	s.addr = addr
	s.log = s.log.With("user", addr)
	s.opMu.Unlock()
	s.mu.Lock()
	s.stopWatch = stop
	s.mu.Unlock()
	s.log.Info("imapserver: login")
	s.setCeiling(time.Now().Add(s.srv.maxSession))
	return nil
}

// setCeiling bounds the connection's life at t (see connlimit.Conn); the
// zero time lifts the bound.
func (s *session) setCeiling(t time.Time) {
	if lc, ok := connlimit.FromConn(s.conn.NetConn()); ok {
		lc.SetCeiling(t)
	}
}

// onChange queues a change of the user's mailbox for the client.
func (s *session) onChange(c mailstore.Change) {
	s.mu.Lock()
	if !s.watching || (s.watchUV != 0 && c.UIDValidity != s.watchUV) {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= maxQueue {
		s.overflow = true
		s.queue = nil
	} else if !s.overflow {
		s.queue = append(s.queue, c)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Select implements goimapserver.Session.
func (s *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.unselect()
	name, err := mailstore.NormalizeFolder(mailbox)
	if err != nil || mailbox == "" {
		return nil, noSuchFolder()
	}
	s.mu.Lock()
	s.watching, s.watchUV, s.queue, s.overflow = true, 0, nil, false
	s.mu.Unlock()
	f, msgs, err := s.srv.store.Messages(s.ctx(), s.addr, name)
	if err != nil {
		s.unselect()
		return nil, s.storeErr("select", err)
	}
	// Changes queued while loading are either in msgs already or later:
	// applying them is idempotent. Keep only this folder's.
	s.mu.Lock()
	s.watchUV = f.UIDValidity
	q := s.queue[:0]
	for _, c := range s.queue {
		if c.UIDValidity == f.UIDValidity {
			q = append(q, c)
		}
	}
	s.queue = q
	s.mu.Unlock()

	sel := &selected{name: name, uidValidity: f.UIDValidity, readOnly: options != nil && options.ReadOnly}
	sel.uids = make([]uint32, len(msgs))
	var firstUnseen uint32
	keywords := map[string]bool{}
	for i, m := range msgs {
		sel.uids[i] = m.UID
		if firstUnseen == 0 && !m.HasFlag(mailstore.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
		for _, fl := range m.Flags {
			if !strings.HasPrefix(fl, `\`) {
				keywords[fl] = true
			}
		}
	}
	s.sel = sel
	s.self = make(map[uint32]string)
	flags := slices.Clone(systemFlags)
	for _, k := range slices.Sorted(maps.Keys(keywords)) {
		flags = append(flags, imap.Flag(k))
	}
	var permanent []imap.Flag
	if !sel.readOnly {
		permanent = append(slices.Clone(systemFlags), imap.FlagWildcard)
	}
	s.log.Debug("imapserver: select", "folder", name, "messages", len(msgs), "read_only", sel.readOnly)
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    permanent,
		NumMessages:       uint32(len(sel.uids)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(f.UIDNext),
		UIDValidity:       f.UIDValidity,
	}, nil
}

// Unselect implements goimapserver.Session.
func (s *session) Unselect() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.unselect()
	return nil
}

func (s *session) unselect() {
	s.mu.Lock()
	s.watching, s.watchUV, s.queue, s.overflow = false, 0, nil, false
	s.mu.Unlock()
	s.sel = nil
	s.self = nil
}

// Create implements goimapserver.Session.
func (s *session) Create(mailbox string, options *imap.CreateOptions) error {
	if mailbox == "" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Empty folder name"}
	}
	if err := s.srv.store.CreateFolder(s.ctx(), s.addr, mailbox); err != nil {
		return s.storeErr("create", err)
	}
	return nil
}

// Delete implements goimapserver.Session.
func (s *session) Delete(mailbox string) error {
	if mailbox == "" {
		return noSuchFolder()
	}
	if err := s.srv.store.DeleteFolder(s.ctx(), s.addr, mailbox); err != nil {
		return s.storeErr("delete", err)
	}
	return nil
}

// Rename implements goimapserver.Session.
func (s *session) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	if mailbox == "" || newName == "" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Empty folder name"}
	}
	if err := s.srv.store.RenameFolder(s.ctx(), s.addr, mailbox, newName); err != nil {
		return s.storeErr("rename", err)
	}
	return nil
}

// Subscribe implements goimapserver.Session.
func (s *session) Subscribe(mailbox string) error {
	if mailbox == "" {
		return noSuchFolder()
	}
	if err := s.srv.store.SetSubscribed(s.ctx(), s.addr, mailbox, true); err != nil {
		return s.storeErr("subscribe", err)
	}
	return nil
}

// Unsubscribe implements goimapserver.Session. Unsubscribing a name that is
// not a folder succeeds.
func (s *session) Unsubscribe(mailbox string) error {
	err := s.srv.store.SetSubscribed(s.ctx(), s.addr, mailbox, false)
	if err != nil && !errors.Is(err, mailstore.ErrNoSuchFolder) && !errors.Is(err, mailstore.ErrInvalid) {
		return s.storeErr("unsubscribe", err)
	}
	return nil
}

// Namespace implements goimapserver.SessionNamespace: one personal
// namespace, no other users', nothing shared.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: mailstore.Delimiter}}}, nil
}

// AppendLimit implements goimapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 { return s.srv.appendLimit }

// List implements goimapserver.Session.
func (s *session) List(w *goimapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailstore.Delimiter})
	}
	folders, err := s.srv.store.Folders(s.ctx(), s.addr)
	if err != nil {
		return s.storeErr("list", err)
	}
	names := make(map[string]bool, len(folders))
	for _, f := range folders {
		names[f.Name] = true
	}
	for _, f := range folders {
		if options.SelectSubscribed && !f.Subscribed {
			continue
		}
		if options.SelectSpecialUse {
			continue // no special-use folders
		}
		if !matchAny(f.Name, ref, patterns) {
			continue
		}
		data := &imap.ListData{Delim: mailstore.Delimiter, Mailbox: f.Name}
		if hasChildren(f.Name, names) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if f.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil {
			st, err := s.status(f, options.ReturnStatus)
			if err != nil {
				return err
			}
			data.Status = st
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func hasChildren(name string, names map[string]bool) bool {
	prefix := name + string(mailstore.Delimiter)
	for n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// Status implements goimapserver.Session.
func (s *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if mailbox == "" {
		return nil, noSuchFolder()
	}
	f, err := s.srv.store.Folder(s.ctx(), s.addr, mailbox)
	if err != nil {
		return nil, s.storeErr("status", err)
	}
	return s.status(f, options)
}

func (s *session) status(f mailstore.Folder, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: f.Name}
	u32 := func(n int) *uint32 { v := uint32(n); return &v }
	if options.NumMessages {
		data.NumMessages = u32(f.Messages)
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(f.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = f.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = u32(f.Unseen)
	}
	if options.NumRecent {
		data.NumRecent = u32(0)
	}
	if options.Size {
		size := f.Size
		data.Size = &size
	}
	if options.AppendLimit {
		data.AppendLimit = &s.srv.appendLimit
	}
	if options.NumDeleted || options.DeletedStorage {
		_, msgs, err := s.srv.store.Messages(s.ctx(), s.addr, f.Name)
		if err != nil {
			return nil, s.storeErr("status", err)
		}
		var n int
		var size int64
		for _, m := range msgs {
			if m.HasFlag(mailstore.FlagDeleted) {
				n++
				size += m.Size
			}
		}
		if options.NumDeleted {
			data.NumDeleted = u32(n)
		}
		if options.DeletedStorage {
			data.DeletedStorage = &size
		}
	}
	return data, nil
}

// Append implements goimapserver.Session.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	ctx := s.ctx()
	if mailbox == "" {
		return nil, s.storeErr("append", errTryCreate{mailstore.ErrNoSuchFolder})
	}
	size := r.Size()
	if size > int64(s.srv.appendLimit) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	}
	// Refuse before reading what could not be stored.
	if _, err := s.srv.store.Folder(ctx, s.addr, mailbox); err != nil {
		return nil, s.storeErr("append", tryCreate(err))
	}
	info, err := s.srv.store.Mailbox(ctx, s.addr)
	if err != nil {
		return nil, s.storeErr("append", err)
	}
	if info.Quota > 0 && info.Used+size > info.Quota {
		return nil, s.storeErr("append", mailstore.ErrOverQuota)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err // the connection is broken
	}
	res, err := s.srv.store.Deliver(ctx, mailstore.Delivery{
		Address: s.addr,
		Folder:  mailbox,
		Message: buf,
		Flags:   flagStrings(options.Flags),
		Time:    options.Time,
	})
	if err != nil {
		return nil, s.storeErr("append", tryCreate(err))
	}
	return &imap.AppendData{UID: imap.UID(res.UID), UIDValidity: res.UIDValidity}, nil
}

// errTryCreate marks a missing destination folder (APPEND, COPY, MOVE).
type errTryCreate struct{ error }

func (e errTryCreate) Unwrap() error { return e.error }

func tryCreate(err error) error {
	if errors.Is(err, mailstore.ErrNoSuchFolder) {
		return errTryCreate{err}
	}
	return err
}

// Poll implements goimapserver.Session.
func (s *session) Poll(w *goimapserver.UpdateWriter, allowExpunge bool) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.apply(w, allowExpunge)
}

// Idle implements goimapserver.Session.
// A session in IDLE is bounded by go-imap's IDLE timeout only; out of it,
// by MaxSessionTime from its end.
func (s *session) Idle(w *goimapserver.UpdateWriter, stop <-chan struct{}) error {
	s.setCeiling(time.Time{})
	defer func() { s.setCeiling(time.Now().Add(s.srv.maxSession)) }()
	for {
		s.opMu.Lock()
		err := s.apply(w, true)
		s.opMu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.srv.ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// apply tells the client about the queued changes of its selected folder,
// and updates its view. Without allowExpunge it stops before the first
// expunge (during FETCH, STORE and SEARCH sequence numbers must not move).
func (s *session) apply(w *goimapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel
	if sel == nil {
		return nil
	}
	s.mu.Lock()
	if s.overflow {
		s.mu.Unlock()
		s.log.Warn("imapserver: too many pending changes, disconnecting")
		s.conn.Bye("Too many changes to the mailbox: please reconnect")
		return errors.New("imapserver: too many pending changes")
	}
	n := len(s.queue)
	if !allowExpunge {
		for i, c := range s.queue {
			if c.Kind == mailstore.MessageExpunged || c.Kind == mailstore.FolderDeleted {
				n = i
				break
			}
		}
	}
	batch := s.queue[:n]
	s.queue = slices.Clone(s.queue[n:])
	drained := len(s.queue) == 0
	s.mu.Unlock()

	exists := false
	flush := func() error {
		if !exists {
			return nil
		}
		exists = false
		return w.WriteNumMessages(uint32(len(sel.uids)))
	}
	for _, c := range batch {
		if c.UIDValidity != sel.uidValidity {
			continue
		}
		switch c.Kind {
		case mailstore.MessageAdded:
			if len(sel.uids) == 0 || c.UID > sel.uids[len(sel.uids)-1] {
				sel.uids = append(sel.uids, c.UID)
				exists = true
			}
		case mailstore.MessageExpunged:
			i, ok := slices.BinarySearch(sel.uids, c.UID)
			if !ok {
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			sel.uids = slices.Delete(sel.uids, i, i+1)
			delete(s.self, c.UID)
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
		case mailstore.FlagsChanged:
			i, ok := slices.BinarySearch(sel.uids, c.UID)
			if !ok {
				continue
			}
			if f, ok := s.self[c.UID]; ok && f == flagKey(c.Flags) {
				delete(s.self, c.UID)
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if err := w.WriteMessageFlags(uint32(i+1), imap.UID(c.UID), imapFlags(c.Flags)); err != nil {
				return err
			}
		case mailstore.FolderRenamed:
			sel.name = c.Folder
		case mailstore.FolderDeleted:
			if err := flush(); err != nil {
				return err
			}
			sel.deleted = true
			for len(sel.uids) > 0 {
				sel.uids = sel.uids[:len(sel.uids)-1]
				if err := w.WriteExpunge(uint32(len(sel.uids) + 1)); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if drained {
		clear(s.self)
	}
	return nil
}

// flagKey is a canonical form of a flag set, to compare two.
func flagKey(flags []string) string {
	l := make([]string, len(flags))
	for i, f := range flags {
		l[i] = strings.ToLower(f)
	}
	slices.Sort(l)
	return strings.Join(l, " ")
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

func flagStrings(flags []imap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

// selectedFolder returns the selected folder, or a NO if it was deleted.
func (s *session) selectedFolder() (*selected, error) {
	if s.sel == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No folder selected"}
	}
	if s.sel.deleted {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "The selected folder was deleted"}
	}
	return s.sel, nil
}

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "The folder is open read-only (EXAMINE)"}
}

// Expunge implements goimapserver.Session. The EXPUNGE responses are sent by
// the poll that follows the command. In a folder opened read-only it does
// nothing (so that CLOSE after EXAMINE expunges nothing).
func (s *session) Expunge(w *goimapserver.ExpungeWriter, uids *imap.UIDSet) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return nil
	}
	var only []uint32
	if uids != nil {
		only = []uint32{}
		for _, it := range s.resolve(*uids) {
			only = append(only, it.uid)
		}
	}
	if _, err := s.srv.store.Expunge(s.ctx(), s.addr, sel.name, only); err != nil {
		return s.storeErr("expunge", err)
	}
	return nil
}

// Store implements goimapserver.Session.
func (s *session) Store(w *goimapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return readOnlyErr()
	}
	if options != nil && options.UnchangedSince != 0 {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "CONDSTORE is not supported"}
	}
	items, err := s.resolveSet(numSet)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	var op mailstore.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = mailstore.SetFlags
	case imap.StoreFlagsAdd:
		op = mailstore.AddFlags
	case imap.StoreFlagsDel:
		op = mailstore.RemoveFlags
	default:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown STORE operation"}
	}
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = it.uid
	}
	msgs, err := s.srv.store.StoreFlags(s.ctx(), s.addr, sel.name, uids, op, flagStrings(flags.Flags))
	if err != nil {
		return s.storeErr("store", err)
	}
	byUID := make(map[uint32]mailstore.Message, len(msgs))
	for _, m := range msgs {
		byUID[m.UID] = m
		s.self[m.UID] = flagKey(m.Flags)
	}
	if flags.Silent {
		return nil
	}
	for _, it := range items {
		m, ok := byUID[it.uid]
		if !ok {
			continue
		}
		rw := w.CreateMessage(it.seq)
		rw.WriteUID(imap.UID(m.UID))
		rw.WriteFlags(imapFlags(m.Flags))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Copy implements goimapserver.Session.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return nil, err
	}
	uids, err := s.resolveUIDs(numSet)
	if err != nil {
		return nil, err
	}
	if dest == "" {
		return nil, s.storeErr("copy", errTryCreate{mailstore.ErrNoSuchFolder})
	}
	res, err := s.srv.store.Copy(s.ctx(), s.addr, sel.name, dest, uids)
	if err != nil {
		return nil, s.storeErr("copy", tryCreate(err))
	}
	return copyData(res), nil
}

// Move implements goimapserver.SessionMove. The EXPUNGE responses are sent
// by the poll that follows the command.
func (s *session) Move(w *goimapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	sel, err := s.selectedFolder()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return readOnlyErr()
	}
	uids, err := s.resolveUIDs(numSet)
	if err != nil {
		return err
	}
	if dest == "" {
		return s.storeErr("move", errTryCreate{mailstore.ErrNoSuchFolder})
	}
	res, err := s.srv.store.Move(s.ctx(), s.addr, sel.name, dest, uids)
	if err != nil && len(res.DestUIDs) == 0 {
		return s.storeErr("move", tryCreate(err))
	}
	if data := copyData(res); data != nil {
		if werr := w.WriteCopyData(data); werr != nil {
			return werr
		}
	}
	if err != nil {
		return s.storeErr("move", err)
	}
	return nil
}

func copyData(res mailstore.CopyResult) *imap.CopyData {
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	data := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.SourceUIDs {
		data.SourceUIDs.AddNum(imap.UID(res.SourceUIDs[i]))
		data.DestUIDs.AddNum(imap.UID(res.DestUIDs[i]))
	}
	return data
}

// storeErr turns a store error into the IMAP response for it. Unexpected
// errors are logged and answered with a generic NO.
func (s *session) storeErr(op string, err error) error {
	code := imap.ResponseCode("")
	text := ""
	var tc errTryCreate
	switch {
	case errors.As(err, &tc):
		code, text = imap.ResponseCodeTryCreate, "No such folder"
	case errors.Is(err, mailstore.ErrNoSuchFolder):
		code, text = imap.ResponseCodeNonExistent, "No such folder"
	case errors.Is(err, mailstore.ErrFolderExists):
		code, text = imap.ResponseCodeAlreadyExists, "Folder already exists"
	case errors.Is(err, mailstore.ErrOverQuota):
		code, text = imap.ResponseCodeOverQuota, "Mailbox over quota"
	case errors.Is(err, mailstore.ErrNoSuchMessage):
		code, text = imap.ResponseCodeNonExistent, "No such message"
	case errors.Is(err, mailstore.ErrNotPermitted):
		code, text = imap.ResponseCodeCannot, userText(err)
	case errors.Is(err, mailstore.ErrInvalid):
		code, text = imap.ResponseCodeCannot, userText(err)
	case errors.Is(err, mailstore.ErrNoSuchMailbox):
		code, text = imap.ResponseCodeNonExistent, "The mailbox no longer exists"
	case errors.Is(err, context.Canceled), errors.Is(err, mailstore.ErrClosed):
		code, text = imap.ResponseCodeUnavailable, "Server shutting down"
	default:
		return s.internal(op, err)
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

func (s *session) internal(op string, err error) error {
	s.log.Error("imapserver: "+op, "err", err)
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal server error"}
}

// userText is the text of a store error meant for the user: what follows
// the "mailstore: operation ...:" context.
func userText(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "mailstore:") {
		msg = msg[i+2:]
	}
	return sanitize(msg)
}

func noSuchFolder() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such folder"}
}
