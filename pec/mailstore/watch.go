package mailstore

import "fmt"

// ChangeKind says what a [Change] reports.
type ChangeKind int

// Kinds of change.
const (
	// MessageAdded: a message was stored (delivered, appended, copied or
	// moved in). UID and Flags describe it.
	MessageAdded ChangeKind = iota + 1
	// MessageExpunged: the message with UID was removed (expunged or moved
	// out).
	MessageExpunged
	// FlagsChanged: the flags of the message with UID are now Flags.
	FlagsChanged
	// FolderCreated: the folder was created.
	FolderCreated
	// FolderDeleted: the folder and all its messages were deleted.
	FolderDeleted
	// FolderRenamed: the folder OldFolder is now called Folder; its
	// UIDVALIDITY and messages are unchanged.
	FolderRenamed
)

// String returns the kind's name, e.g. "MessageAdded".
func (k ChangeKind) String() string {
	switch k {
	case MessageAdded:
		return "MessageAdded"
	case MessageExpunged:
		return "MessageExpunged"
	case FlagsChanged:
		return "FlagsChanged"
	case FolderCreated:
		return "FolderCreated"
	case FolderDeleted:
		return "FolderDeleted"
	case FolderRenamed:
		return "FolderRenamed"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change reports one committed change to a mailbox.
type Change struct {
	Kind    ChangeKind
	Address string
	// Folder is the folder's name (its new name for FolderRenamed).
	Folder string
	// OldFolder is the folder's previous name, for FolderRenamed.
	OldFolder string
	// UIDValidity identifies the folder: unlike its name it never changes
	// and is never reused.
	UIDValidity uint32
	// UID is the message's UID, for message changes.
	UID uint32
	// Flags are the message's flags, for MessageAdded and FlagsChanged.
	Flags []string
}

type watcher struct{ fn func(Change) }

// Watch calls fn for every change committed to address's mailbox from now on,
// until stop is called. Calls for one mailbox are made one at a time, in
// commit order, from the goroutine that made the change, while the mailbox is
// locked: fn must return quickly and must not call the Store (queue the
// change and handle it elsewhere). Watch does not check that the mailbox
// exists.
func (s *Store) Watch(address string, fn func(Change)) (stop func(), err error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, fmt.Errorf("mailstore: watch: %w", err)
	}
	if fn == nil {
		return nil, fmt.Errorf("mailstore: watch %s: nil func: %w", addr, ErrInvalid)
	}
	w := &watcher{fn: fn}
	s.watchMu.Lock()
	m := s.watchers[addr]
	if m == nil {
		m = make(map[*watcher]struct{})
		s.watchers[addr] = m
	}
	m[w] = struct{}{}
	s.watchMu.Unlock()
	return func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		if m := s.watchers[addr]; m != nil {
			delete(m, w)
			if len(m) == 0 {
				delete(s.watchers, addr)
			}
		}
	}, nil
}

// notify calls the watchers of addr. The caller holds addr's lock.
func (s *Store) notify(addr string, changes ...Change) {
	if len(changes) == 0 {
		return
	}
	s.watchMu.Lock()
	ws := make([]*watcher, 0, len(s.watchers[addr]))
	for w := range s.watchers[addr] {
		ws = append(ws, w)
	}
	s.watchMu.Unlock()
	for _, c := range changes {
		c.Address = addr
		for _, w := range ws {
			if c.Flags != nil {
				c.Flags = append([]string(nil), c.Flags...)
			}
			w.fn(c)
		}
	}
}
