package mailstore

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Folder describes a folder of a mailbox.
type Folder struct {
	// Name is the folder's canonical name (see NormalizeFolder).
	Name string
	// UIDValidity is unique in the store and never reused, even after the
	// folder is deleted; renaming keeps it.
	UIDValidity uint32
	// UIDNext is the UID the next message stored in the folder will get.
	UIDNext uint32
	// Messages is the number of messages in the folder, Unseen the number
	// of them without \Seen.
	Messages, Unseen int
	// Size is the bytes of the messages in the folder.
	Size int64
	// Subscribed reports whether the folder is subscribed (IMAP LSUB).
	Subscribed bool
}

func (f folderRec) info(name string) Folder {
	return Folder{
		Name:        name,
		UIDValidity: f.UIDValidity,
		UIDNext:     f.UIDNext,
		Messages:    f.Messages,
		Unseen:      f.Unseen,
		Size:        f.Size,
		Subscribed:  f.Subscribed,
	}
}

// Folders lists the folders of address's mailbox, INBOX first, then sorted by
// name.
func (s *Store) Folders(ctx context.Context, address string) ([]Folder, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders: %w", err)
	}
	var out []Folder
	err = s.view(ctx, func(txn *badger.Txn) error {
		recs, err := listFolders(txn, addr)
		if err != nil {
			return err
		}
		for name, f := range recs {
			out = append(out, f.info(name))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders of %s: %w", addr, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name == Inbox || out[j].Name == Inbox {
			return out[i].Name == Inbox && out[j].Name != Inbox
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// listFolders returns address's folders by name; ErrNoSuchMailbox if the
// account does not exist.
func listFolders(txn *badger.Txn, addr string) (map[string]folderRec, error) {
	if _, err := getAccount(txn, addr); err != nil {
		return nil, err
	}
	prefix := folderPrefix(addr)
	m := make(map[string]folderRec)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		var f folderRec
		if err := getJSON(txn, k, &f, ErrNoSuchFolder); err != nil {
			return nil, err
		}
		m[string(k[len(prefix):])] = f
	}
	return m, nil
}

// Folder describes one folder of address's mailbox; an error wraps
// ErrNoSuchFolder if there is none of that name.
func (s *Store) Folder(ctx context.Context, address, name string) (Folder, error) {
	addr, name, err := normalize(address, name)
	if err != nil {
		return Folder{}, fmt.Errorf("mailstore: folder: %w", err)
	}
	var f folderRec
	err = s.view(ctx, func(txn *badger.Txn) error {
		if _, err := getAccount(txn, addr); err != nil {
			return err
		}
		f, err = getFolder(txn, addr, name)
		return err
	})
	if err != nil {
		return Folder{}, fmt.Errorf("mailstore: folder %q of %s: %w", name, addr, err)
	}
	return f.info(name), nil
}

func normalize(address, folder string) (string, string, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return "", "", err
	}
	name, err := NormalizeFolder(folder)
	if err != nil {
		return "", "", err
	}
	return addr, name, nil
}

// parents returns the names of the levels above name: "a/b/c" gives "a",
// "a/b".
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Delimiter {
			out = append(out, name[:i])
		}
	}
	return out
}

// CreateFolder creates a folder, and the levels above it that are missing
// ("a/b" creates "a" too). An error wraps ErrFolderExists if it exists, and
// ErrNotPermitted if the mailbox has MaxFolders folders.
func (s *Store) CreateFolder(ctx context.Context, address, name string) error {
	addr, name, err := normalize(address, name)
	if err != nil {
		return fmt.Errorf("mailstore: create folder: %w", err)
	}
	unlock := s.lock(addr)
	defer unlock()
	s.globalMu.Lock()
	defer s.globalMu.Unlock()
	var changes []Change
	err = s.update(ctx, func(txn *badger.Txn) error {
		changes = changes[:0]
		all, err := listFolders(txn, addr)
		if err != nil {
			return err
		}
		if _, ok := all[name]; ok {
			return ErrFolderExists
		}
		for _, n := range append(parents(name), name) {
			if _, ok := all[n]; ok {
				continue
			}
			if len(all) >= MaxFolders {
				return fmt.Errorf("more than %d folders: %w", MaxFolders, ErrNotPermitted)
			}
			f, err := s.newFolder(txn)
			if err != nil {
				return err
			}
			if err := setJSON(txn, folderKey(addr, n), f); err != nil {
				return err
			}
			all[n] = f
			changes = append(changes, Change{Kind: FolderCreated, Folder: n, UIDValidity: f.UIDValidity})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: create folder %q of %s: %w", name, addr, err)
	}
	s.notify(addr, changes...)
	return nil
}

// DeleteFolder deletes a folder and its messages, freeing their quota at
// once (the bytes themselves are reclaimed in the background). INBOX and
// folders with subfolders cannot be deleted (ErrNotPermitted).
func (s *Store) DeleteFolder(ctx context.Context, address, name string) error {
	addr, name, err := normalize(address, name)
	if err != nil {
		return fmt.Errorf("mailstore: delete folder: %w", err)
	}
	if name == Inbox {
		return fmt.Errorf("mailstore: delete folder %s of %s: INBOX cannot be deleted: %w", name, addr, ErrNotPermitted)
	}
	unlock := s.lock(addr)
	defer unlock()
	var f folderRec
	err = s.update(ctx, func(txn *badger.Txn) error {
		all, err := listFolders(txn, addr)
		if err != nil {
			return err
		}
		var ok bool
		if f, ok = all[name]; !ok {
			return ErrNoSuchFolder
		}
		for n := range all {
			if strings.HasPrefix(n, name+string(Delimiter)) {
				return fmt.Errorf("it has subfolders: %w", ErrNotPermitted)
			}
		}
		a, err := getAccount(txn, addr)
		if err != nil {
			return err
		}
		a.Used -= f.Size
		a.Messages -= f.Messages
		if err := setJSON(txn, accountKey(addr), a); err != nil {
			return err
		}
		if err := txn.Delete(folderKey(addr, name)); err != nil {
			return err
		}
		return txn.Set(tombKey(f.ID), nil)
	})
	if err != nil {
		return fmt.Errorf("mailstore: delete folder %q of %s: %w", name, addr, err)
	}
	s.log.Info("mailstore: folder deleted", "address", addr, "folder", name, "messages", f.Messages)
	s.notify(addr, Change{Kind: FolderDeleted, Folder: name, UIDValidity: f.UIDValidity})
	s.triggerPurge()
	return nil
}

// RenameFolder renames a folder and its subfolders, creating the missing
// levels above the new name. Renaming INBOX moves its messages to a new
// folder and leaves INBOX empty (with a new UIDVALIDITY); its subfolders stay.
// An error wraps ErrNoSuchFolder, ErrFolderExists, or ErrNotPermitted (a
// folder cannot move under itself).
func (s *Store) RenameFolder(ctx context.Context, address, oldName, newName string) error {
	addr, oldName, err := normalize(address, oldName)
	if err != nil {
		return fmt.Errorf("mailstore: rename folder: %w", err)
	}
	newName, err = NormalizeFolder(newName)
	if err != nil {
		return fmt.Errorf("mailstore: rename folder: %w", err)
	}
	if newName == Inbox {
		return fmt.Errorf("mailstore: rename folder %q of %s to INBOX: %w", oldName, addr, ErrFolderExists)
	}
	if newName == oldName || strings.HasPrefix(newName, oldName+string(Delimiter)) {
		return fmt.Errorf("mailstore: rename folder %q of %s to %q: cannot move under itself: %w", oldName, addr, newName, ErrNotPermitted)
	}
	unlock := s.lock(addr)
	defer unlock()
	s.globalMu.Lock()
	defer s.globalMu.Unlock()
	var changes []Change
	err = s.update(ctx, func(txn *badger.Txn) error {
		changes = changes[:0]
		all, err := listFolders(txn, addr)
		if err != nil {
			return err
		}
		if _, ok := all[oldName]; !ok {
			return ErrNoSuchFolder
		}
		if _, ok := all[newName]; ok {
			return ErrFolderExists
		}
		// Names to move: the folder and, unless it is INBOX, its subfolders.
		moves := map[string]string{oldName: newName}
		if oldName != Inbox {
			for n := range all {
				if rest, ok := strings.CutPrefix(n, oldName+string(Delimiter)); ok {
					to := newName + string(Delimiter) + rest
					if len(to) > maxFolderSize {
						return fmt.Errorf("folder name %q too long: %w", clip(to), ErrInvalid)
					}
					if _, ok := all[to]; ok {
						return ErrFolderExists
					}
					moves[n] = to
				}
			}
		}
		for from, to := range moves {
			f := all[from]
			if err := txn.Delete(folderKey(addr, from)); err != nil {
				return err
			}
			if err := setJSON(txn, folderKey(addr, to), f); err != nil {
				return err
			}
			// No target is an existing name, so none is a later source.
			delete(all, from)
			all[to] = f
			changes = append(changes, Change{Kind: FolderRenamed, Folder: to, OldFolder: from, UIDValidity: f.UIDValidity})
		}
		// Missing levels above the new name.
		for _, p := range parents(newName) {
			if _, ok := all[p]; ok {
				continue
			}
			f, err := s.newFolder(txn)
			if err != nil {
				return err
			}
			if err := setJSON(txn, folderKey(addr, p), f); err != nil {
				return err
			}
			all[p] = f
			changes = append(changes, Change{Kind: FolderCreated, Folder: p, UIDValidity: f.UIDValidity})
		}
		if oldName == Inbox {
			f, err := s.newFolder(txn)
			if err != nil {
				return err
			}
			if err := setJSON(txn, folderKey(addr, Inbox), f); err != nil {
				return err
			}
			changes = append(changes, Change{Kind: FolderCreated, Folder: Inbox, UIDValidity: f.UIDValidity})
		}
		if len(all) > MaxFolders {
			return fmt.Errorf("more than %d folders: %w", MaxFolders, ErrNotPermitted)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: rename folder %q of %s to %q: %w", oldName, addr, newName, err)
	}
	s.log.Info("mailstore: folder renamed", "address", addr, "from", oldName, "to", newName)
	s.notify(addr, changes...)
	return nil
}

// SetSubscribed marks a folder subscribed or not (IMAP SUBSCRIBE and
// UNSUBSCRIBE). New folders are subscribed.
func (s *Store) SetSubscribed(ctx context.Context, address, name string, subscribed bool) error {
	addr, name, err := normalize(address, name)
	if err != nil {
		return fmt.Errorf("mailstore: subscribe: %w", err)
	}
	unlock := s.lock(addr)
	defer unlock()
	err = s.update(ctx, func(txn *badger.Txn) error {
		if _, err := getAccount(txn, addr); err != nil {
			return err
		}
		f, err := getFolder(txn, addr, name)
		if err != nil {
			return err
		}
		f.Subscribed = subscribed
		return setJSON(txn, folderKey(addr, name), f)
	})
	if err != nil {
		return fmt.Errorf("mailstore: subscribe folder %q of %s: %w", name, addr, err)
	}
	return nil
}
