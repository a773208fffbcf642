package mailstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Check verifies the store's consistency: that every message has its bytes
// and header, that each message's size is its length, and that the counters
// of every folder and mailbox (messages, unseen, bytes used) match the
// messages they hold. It reads every message, in one snapshot, and returns
// the first inconsistency found.
func (s *Store) Check(ctx context.Context) error {
	err := s.view(ctx, func(txn *badger.Txn) error {
		var addrs []string
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pAccount}})
		for it.Rewind(); it.Valid(); it.Next() {
			addrs = append(addrs, string(it.Item().Key()[1:]))
		}
		it.Close()
		for _, addr := range addrs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := checkAccount(ctx, txn, addr); err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: check: %w", err)
	}
	return nil
}

func checkAccount(ctx context.Context, txn *badger.Txn, addr string) error {
	a, err := getAccount(txn, addr)
	if err != nil {
		return err
	}
	if _, _, _, err := parseHash(a.Password); err != nil {
		return fmt.Errorf("password hash: %w", err)
	}
	folders, err := listFolders(txn, addr)
	if err != nil {
		return err
	}
	if _, ok := folders[Inbox]; !ok {
		return errors.New("no INBOX")
	}
	var used int64
	var n int
	for name, f := range folders {
		var size int64
		var count, unseen int
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(pMeta, f.ID), PrefetchValues: true, PrefetchSize: 100})
		for it.Rewind(); it.Valid(); it.Next() {
			if count%1024 == 0 {
				if err := ctx.Err(); err != nil {
					it.Close()
					return err
				}
			}
			k := it.Item().KeyCopy(nil)
			uid := be32(k[9:])
			var m msgRec
			if err := getJSON(txn, k, &m, ErrNoSuchMessage); err != nil {
				it.Close()
				return err
			}
			if uid == 0 || uid >= f.UIDNext {
				it.Close()
				return fmt.Errorf("folder %q: message UID %d not below UIDNEXT %d", name, uid, f.UIDNext)
			}
			item, err := txn.Get(msgKey(pBody, f.ID, uid))
			if err != nil {
				it.Close()
				return fmt.Errorf("folder %q: body of message %d: %w", name, uid, err)
			}
			var blen int64
			if err := item.Value(func(b []byte) error { blen = int64(len(b)); return nil }); err != nil {
				it.Close()
				return fmt.Errorf("folder %q: body of message %d: %w", name, uid, err)
			}
			if blen != m.Size {
				it.Close()
				return fmt.Errorf("folder %q: message %d has %d bytes, recorded %d", name, uid, blen, m.Size)
			}
			if _, err := txn.Get(msgKey(pHeader, f.ID, uid)); err != nil {
				it.Close()
				return fmt.Errorf("folder %q: header of message %d: %w", name, uid, err)
			}
			size += m.Size
			count++
			if !hasFlag(m.Flags, FlagSeen) {
				unseen++
			}
		}
		it.Close()
		if size != f.Size || count != f.Messages || unseen != f.Unseen {
			return fmt.Errorf("folder %q: holds %d messages, %d unseen, %d bytes; recorded %d, %d, %d",
				name, count, unseen, size, f.Messages, f.Unseen, f.Size)
		}
		used += size
		n += count
	}
	if used != a.Used || n != a.Messages {
		return fmt.Errorf("holds %d messages of %d bytes; recorded %d, %d", n, used, a.Messages, a.Used)
	}
	return nil
}
