package mailstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Delivery is a message to store with [Store.Deliver].
type Delivery struct {
	// Address is the mailbox to deliver to.
	Address string
	// Folder is the folder to deliver to; "" means INBOX.
	Folder string
	// Message is the message, stored byte for byte (under the fields of a
	// final delivery, see WithEnvelope).
	Message []byte
	// Flags are the message's initial flags.
	Flags []string
	// Key, if not empty, makes the delivery idempotent: a later Deliver to
	// the same address with the same Key stores nothing and returns the
	// first delivery's result, with Duplicate set.
	Key string
	// Time is the message's internal date; the zero Time means now.
	Time time.Time
}

// Envelope is the SMTP envelope of the message a context is about, which
// makes Deliver a final delivery (RFC 5321 §4.4): see [WithEnvelope].
type Envelope struct {
	// ReturnPath is the reverse path (MAIL FROM); empty is the null
	// reverse path, written <>.
	ReturnPath string
	// Trace holds the trace fields (Received) of the last SMTP reception,
	// CRLF-terminated, to put under Return-Path and Delivered-To; empty
	// for a message that did not come over SMTP (one the gestore sends
	// itself).
	Trace string
}

// envelopeKey is the context key of an Envelope.
type envelopeKey struct{}

// WithEnvelope returns a copy of ctx carrying env. Deliver under such a
// context is a final delivery: the stored message starts with
// "Return-Path: <env.ReturnPath>", "Delivered-To: <address>" and env.Trace,
// then the message byte for byte, as mail servers deliver into mailboxes
// (RFC 5321 §4.4). The fields are outside any S/MIME signed entity, which
// still verifies. A Deliver whose context carries no Envelope (an IMAP
// APPEND) stores the message as it is.
func WithEnvelope(ctx context.Context, env Envelope) context.Context {
	return context.WithValue(ctx, envelopeKey{}, env)
}

// EnvelopeFrom returns the Envelope ctx carries, if any.
func EnvelopeFrom(ctx context.Context) (Envelope, bool) {
	env, ok := ctx.Value(envelopeKey{}).(Envelope)
	return env, ok
}

// finalHeader returns the fields a final delivery to addr puts at the top
// of the message, in the line endings of msg: Return-Path, Delivered-To and
// env.Trace. It refuses a trace that would not be header fields (one not
// ending in CRLF, holding an empty line or a bare CR or LF, or starting
// with a continuation line).
func finalHeader(env Envelope, addr string, msg []byte) ([]byte, error) {
	// The reverse path comes from the network: what would end the field
	// or the brackets is dropped, never refused.
	rp := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '<' || r == '>' {
			return -1
		}
		return r
	}, strings.TrimSpace(env.ReturnPath))
	trace := env.Trace
	if trace != "" && (!strings.HasSuffix(trace, "\r\n") || strings.Contains(trace, "\r\n\r\n") ||
		strings.Contains(strings.ReplaceAll(trace, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(trace, "\r\n", ""), "\r") ||
		trace[0] == ' ' || trace[0] == '\t' || !strings.Contains(strings.SplitN(trace, "\r\n", 2)[0], ":")) {
		return nil, fmt.Errorf("trace %q is not header fields ending in CRLF: %w", truncate(trace, 80), ErrInvalid)
	}
	h := "Return-Path: <" + rp + ">\r\nDelivered-To: " + addr + "\r\n" + trace
	if i := bytes.IndexByte(msg, '\n'); i >= 0 && (i == 0 || msg[i-1] != '\r') {
		h = strings.ReplaceAll(h, "\r\n", "\n")
	}
	return []byte(h), nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Delivered is the result of [Store.Deliver].
type Delivered struct {
	// UID is the message's UID in its folder, UIDValidity the folder's.
	UID, UIDValidity uint32
	// Duplicate reports that the Key had already been delivered: nothing
	// was stored and UID and UIDValidity are those of the first delivery.
	Duplicate bool
}

// Message describes a stored message.
type Message struct {
	UID uint32
	// Flags are the message's flags, system flags in their canonical
	// spelling (FlagSeen, ...).
	Flags []string
	// Time is the internal date: when the message was delivered or
	// appended.
	Time time.Time
	// Size is the message's length in bytes.
	Size int64
}

// FlagOp says how [Store.StoreFlags] changes flags.
type FlagOp int

// Flag operations.
const (
	// SetFlags replaces the flags.
	SetFlags FlagOp = iota
	// AddFlags adds to the flags.
	AddFlags
	// RemoveFlags removes from the flags.
	RemoveFlags
)

// CopyResult is the result of [Store.Copy] and [Store.Move]:
// SourceUIDs[i] was copied to DestUIDs[i] in the folder with UIDValidity.
type CopyResult struct {
	UIDValidity uint32
	SourceUIDs  []uint32
	DestUIDs    []uint32
}

// Deliver stores a message durably (it is on disk when Deliver returns) and
// returns its UID. Under a context with an Envelope ([WithEnvelope]) it is a
// final delivery: Return-Path, Delivered-To and the trace fields head the
// stored message; without, the message is stored byte for byte. An error
// wraps ErrNoSuchMailbox, ErrNoSuchFolder,
// ErrOverQuota (the mailbox's Used plus the message's length would exceed a
// non-zero Quota), or ErrInvalid (bad address, folder or flag, empty or
// oversized message, oversized Key). With a non-empty Key already delivered
// to the address it stores nothing and returns the first result with
// Duplicate set, even if the mailbox is now full.
func (s *Store) Deliver(ctx context.Context, d Delivery) (Delivered, error) {
	addr, err := NormalizeAddress(d.Address)
	if err != nil {
		return Delivered{}, fmt.Errorf("mailstore: deliver: %w", err)
	}
	folder, err := NormalizeFolder(d.Folder)
	if err != nil {
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: %w", addr, err)
	}
	flags, err := canonicalFlags(d.Flags)
	if err != nil {
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: %w", addr, err)
	}
	if len(d.Message) > 0 {
		if env, ok := EnvelopeFrom(ctx); ok {
			h, err := finalHeader(env, addr, d.Message)
			if err != nil {
				return Delivered{}, fmt.Errorf("mailstore: deliver to %s: %w", addr, err)
			}
			d.Message = append(h, d.Message...)
		}
	}
	switch {
	case len(d.Message) == 0:
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: empty message: %w", addr, ErrInvalid)
	case len(d.Message) > MaxMessageSize:
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: message larger than %d bytes: %w", addr, MaxMessageSize, ErrInvalid)
	case len(d.Key) > MaxKeySize:
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: key longer than %d bytes: %w", addr, MaxKeySize, ErrInvalid)
	}
	if err := s.guard.Check(); err != nil {
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: %w", addr, err)
	}
	t := d.Time
	if t.IsZero() {
		t = s.now()
	}
	unlock := s.lock(addr)
	defer unlock()
	var res Delivered
	err = s.update(ctx, func(txn *badger.Txn) error {
		res = Delivered{}
		a, err := getAccount(txn, addr)
		if err != nil {
			return err
		}
		if d.Key != "" {
			var r deliveryRec
			err := getJSON(txn, deliveryKey(addr, d.Key), &r, errNotFound)
			if err == nil {
				res = Delivered{UID: r.UID, UIDValidity: r.UIDValidity, Duplicate: true}
				return nil
			}
			if !errors.Is(err, errNotFound) {
				return err
			}
		}
		f, err := getFolder(txn, addr, folder)
		if err != nil {
			return err
		}
		uid, err := addMessage(txn, &a, &f, d.Message, msgRec{Size: int64(len(d.Message)), Time: t, Flags: flags}, true)
		if err != nil {
			return err
		}
		res = Delivered{UID: uid, UIDValidity: f.UIDValidity}
		if d.Key != "" {
			if err := setJSON(txn, deliveryKey(addr, d.Key), deliveryRec{UID: uid, UIDValidity: f.UIDValidity}); err != nil {
				return err
			}
		}
		return putRecords(txn, addr, a, map[string]*folderRec{folder: &f})
	})
	if err != nil {
		return Delivered{}, fmt.Errorf("mailstore: deliver to %s: %w", addr, err)
	}
	if res.Duplicate {
		s.log.Debug("mailstore: duplicate delivery", "address", addr, "uid", res.UID)
		return res, nil
	}
	s.notify(addr, Change{Kind: MessageAdded, Folder: folder, UIDValidity: res.UIDValidity, UID: res.UID, Flags: flags})
	return res, nil
}

// Delivered looks up a delivery Key made to address. It returns the result of
// that delivery (with Duplicate false) and true, or false if the Key was never
// delivered. The record of a Key outlives the message.
func (s *Store) Delivered(ctx context.Context, address, key string) (Delivered, bool, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return Delivered{}, false, fmt.Errorf("mailstore: delivered: %w", err)
	}
	if key == "" || len(key) > MaxKeySize {
		return Delivered{}, false, fmt.Errorf("mailstore: delivered to %s: bad key length: %w", addr, ErrInvalid)
	}
	var r deliveryRec
	found := false
	err = s.view(ctx, func(txn *badger.Txn) error {
		if _, err := getAccount(txn, addr); err != nil {
			return err
		}
		err := getJSON(txn, deliveryKey(addr, key), &r, errNotFound)
		if errors.Is(err, errNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return Delivered{}, false, fmt.Errorf("mailstore: delivered to %s: %w", addr, err)
	}
	return Delivered{UID: r.UID, UIDValidity: r.UIDValidity}, found, nil
}

// addMessage stores a message in f, updating the records a and f, which the
// caller writes back. With checkQuota it refuses to go over the quota.
func addMessage(txn *badger.Txn, a *accountRec, f *folderRec, msg []byte, rec msgRec, checkQuota bool) (uint32, error) {
	if checkQuota && a.Quota > 0 && a.Used+rec.Size > a.Quota {
		return 0, ErrOverQuota
	}
	if f.UIDNext == 0 || f.UIDNext == math.MaxUint32 {
		return 0, fmt.Errorf("folder has used all its UIDs: %w", ErrNotPermitted)
	}
	uid := f.UIDNext
	if err := setJSON(txn, msgKey(pMeta, f.ID, uid), rec); err != nil {
		return 0, err
	}
	if err := txn.Set(msgKey(pHeader, f.ID, uid), HeaderSection(msg)); err != nil {
		return 0, err
	}
	if err := txn.Set(msgKey(pBody, f.ID, uid), msg); err != nil {
		return 0, err
	}
	f.UIDNext++
	f.Messages++
	f.Size += rec.Size
	if !hasFlag(rec.Flags, FlagSeen) {
		f.Unseen++
	}
	a.Used += rec.Size
	a.Messages++
	return uid, nil
}

// removeMessage deletes a message of f, updating a and f.
func removeMessage(txn *badger.Txn, a *accountRec, f *folderRec, uid uint32) (msgRec, error) {
	var m msgRec
	if err := getJSON(txn, msgKey(pMeta, f.ID, uid), &m, ErrNoSuchMessage); err != nil {
		return msgRec{}, err
	}
	for _, p := range []byte{pMeta, pHeader, pBody} {
		if err := txn.Delete(msgKey(p, f.ID, uid)); err != nil {
			return msgRec{}, err
		}
	}
	f.Messages--
	f.Size -= m.Size
	if !hasFlag(m.Flags, FlagSeen) {
		f.Unseen--
	}
	a.Used -= m.Size
	a.Messages--
	return m, nil
}

func putRecords(txn *badger.Txn, addr string, a accountRec, folders map[string]*folderRec) error {
	if err := setJSON(txn, accountKey(addr), a); err != nil {
		return err
	}
	for name, f := range folders {
		if err := setJSON(txn, folderKey(addr, name), f); err != nil {
			return err
		}
	}
	return nil
}

// HeaderSection returns the header section of msg, up to and including the
// empty line that ends it (all of msg if there is none): what Header
// returns for a stored message.
func HeaderSection(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return msg[:2]
	}
	if bytes.HasPrefix(msg, []byte("\n")) {
		return msg[:1]
	}
	i := bytes.Index(msg, []byte("\n\r\n"))
	j := bytes.Index(msg, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return msg[:i+3]
	case j >= 0:
		return msg[:j+2]
	}
	return msg
}

// Messages returns the folder's description and its messages, in ascending
// UID order, as one consistent snapshot.
func (s *Store) Messages(ctx context.Context, address, folder string) (Folder, []Message, error) {
	addr, name, err := normalize(address, folder)
	if err != nil {
		return Folder{}, nil, fmt.Errorf("mailstore: messages: %w", err)
	}
	var f folderRec
	var out []Message
	err = s.view(ctx, func(txn *badger.Txn) error {
		f, err = openFolder(txn, addr, name)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(pMeta, f.ID), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			k := it.Item().KeyCopy(nil)
			var m msgRec
			if err := getJSON(txn, k, &m, ErrNoSuchMessage); err != nil {
				return err
			}
			out = append(out, m.message(be32(k[9:])))
		}
		return nil
	})
	if err != nil {
		return Folder{}, nil, fmt.Errorf("mailstore: messages of %s %q: %w", addr, name, err)
	}
	return f.info(name), out, nil
}

func (m msgRec) message(uid uint32) Message {
	return Message{UID: uid, Flags: m.Flags, Time: m.Time, Size: m.Size}
}

func openFolder(txn *badger.Txn, addr, name string) (folderRec, error) {
	if _, err := getAccount(txn, addr); err != nil {
		return folderRec{}, err
	}
	return getFolder(txn, addr, name)
}

// MessagesByUID describes the messages of the folder with the given UIDs, in
// ascending UID order; UIDs with no message are left out.
func (s *Store) MessagesByUID(ctx context.Context, address, folder string, uids []uint32) ([]Message, error) {
	addr, name, err := normalize(address, folder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: messages: %w", err)
	}
	uids = sortedUIDs(uids)
	var out []Message
	err = s.view(ctx, func(txn *badger.Txn) error {
		f, err := openFolder(txn, addr, name)
		if err != nil {
			return err
		}
		for _, uid := range uids {
			var m msgRec
			err := getJSON(txn, msgKey(pMeta, f.ID, uid), &m, ErrNoSuchMessage)
			if errors.Is(err, ErrNoSuchMessage) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, m.message(uid))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: messages of %s %q: %w", addr, name, err)
	}
	return out, nil
}

func sortedUIDs(uids []uint32) []uint32 {
	u := slices.Clone(uids)
	slices.Sort(u)
	return slices.Compact(u)
}

// Body returns the bytes of a message, exactly as delivered.
func (s *Store) Body(ctx context.Context, address, folder string, uid uint32) ([]byte, error) {
	return s.value(ctx, "body", pBody, address, folder, uid)
}

// Header returns the header section of a message: its bytes up to and
// including the empty line that ends the header (all of it if it has none).
func (s *Store) Header(ctx context.Context, address, folder string, uid uint32) ([]byte, error) {
	return s.value(ctx, "header", pHeader, address, folder, uid)
}

func (s *Store) value(ctx context.Context, what string, p byte, address, folder string, uid uint32) ([]byte, error) {
	addr, name, err := normalize(address, folder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: %s: %w", what, err)
	}
	var b []byte
	err = s.view(ctx, func(txn *badger.Txn) error {
		f, err := openFolder(txn, addr, name)
		if err != nil {
			return err
		}
		item, err := txn.Get(msgKey(p, f.ID, uid))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNoSuchMessage
		}
		if err != nil {
			return err
		}
		b, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: %s of message %d in %s %q: %w", what, uid, addr, name, err)
	}
	return b, nil
}

// StoreFlags changes the flags of the folder's messages with the given UIDs
// and returns those messages as they now are (UIDs with no message are left
// out). Changes are committed a few hundred messages at a time.
func (s *Store) StoreFlags(ctx context.Context, address, folder string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	addr, name, err := normalize(address, folder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: store flags: %w", err)
	}
	flags, err = canonicalFlags(flags)
	if err != nil {
		return nil, fmt.Errorf("mailstore: store flags in %s %q: %w", addr, name, err)
	}
	if op != SetFlags && op != AddFlags && op != RemoveFlags {
		return nil, fmt.Errorf("mailstore: store flags in %s %q: unknown operation %d: %w", addr, name, op, ErrInvalid)
	}
	uids = sortedUIDs(uids)
	unlock := s.lock(addr)
	defer unlock()
	var out []Message
	for len(uids) > 0 {
		part := uids[:min(chunk, len(uids))]
		uids = uids[len(part):]
		var done []Message
		var changes []Change
		err := s.update(ctx, func(txn *badger.Txn) error {
			done, changes = done[:0], changes[:0]
			f, err := openFolder(txn, addr, name)
			if err != nil {
				return err
			}
			for _, uid := range part {
				var m msgRec
				err := getJSON(txn, msgKey(pMeta, f.ID, uid), &m, ErrNoSuchMessage)
				if errors.Is(err, ErrNoSuchMessage) {
					continue
				}
				if err != nil {
					return err
				}
				nf := applyFlags(m.Flags, op, flags)
				if len(nf) > MaxFlags {
					return fmt.Errorf("message %d would have more than %d flags: %w", uid, MaxFlags, ErrInvalid)
				}
				if !sameFlags(nf, m.Flags) {
					wasSeen, isSeen := hasFlag(m.Flags, FlagSeen), hasFlag(nf, FlagSeen)
					if wasSeen && !isSeen {
						f.Unseen++
					} else if !wasSeen && isSeen {
						f.Unseen--
					}
					m.Flags = nf
					if err := setJSON(txn, msgKey(pMeta, f.ID, uid), m); err != nil {
						return err
					}
					changes = append(changes, Change{Kind: FlagsChanged, Folder: name, UIDValidity: f.UIDValidity, UID: uid, Flags: nf})
				}
				done = append(done, m.message(uid))
			}
			if len(changes) == 0 {
				return nil
			}
			return setJSON(txn, folderKey(addr, name), f)
		})
		if err != nil {
			return nil, fmt.Errorf("mailstore: store flags in %s %q: %w", addr, name, err)
		}
		out = append(out, done...)
		s.notify(addr, changes...)
	}
	return out, nil
}

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case SetFlags:
		out = append(out, flags...)
	case AddFlags:
		out = append(out, cur...)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
	case RemoveFlags:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// sameFlags reports whether a and b hold the same flags, in any order.
func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

// Expunge permanently removes the folder's messages flagged \Deleted (only
// those among uids if uids is not nil) and returns their UIDs, in ascending
// order. Their bytes stop counting against the quota at once. Messages are
// removed a few hundred at a time, each batch atomically.
func (s *Store) Expunge(ctx context.Context, address, folder string, uids []uint32) ([]uint32, error) {
	addr, name, err := normalize(address, folder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: expunge: %w", err)
	}
	var only map[uint32]bool
	if uids != nil {
		only = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			only[u] = true
		}
	}
	unlock := s.lock(addr)
	defer unlock()
	_, msgs, err := s.Messages(ctx, addr, name)
	if err != nil {
		return nil, fmt.Errorf("mailstore: expunge %s %q: %w", addr, name, err)
	}
	var targets []uint32
	for _, m := range msgs {
		if m.HasFlag(FlagDeleted) && (only == nil || only[m.UID]) {
			targets = append(targets, m.UID)
		}
	}
	var out []uint32
	for len(targets) > 0 {
		part := targets[:min(chunk, len(targets))]
		targets = targets[len(part):]
		var done []uint32
		var uv uint32
		err := s.update(ctx, func(txn *badger.Txn) error {
			done = done[:0]
			a, err := getAccount(txn, addr)
			if err != nil {
				return err
			}
			f, err := getFolder(txn, addr, name)
			if err != nil {
				return err
			}
			uv = f.UIDValidity
			for _, uid := range part {
				if _, err := removeMessage(txn, &a, &f, uid); errors.Is(err, ErrNoSuchMessage) {
					continue
				} else if err != nil {
					return err
				}
				done = append(done, uid)
			}
			return putRecords(txn, addr, a, map[string]*folderRec{name: &f})
		})
		if err != nil {
			return out, fmt.Errorf("mailstore: expunge %s %q: %w", addr, name, err)
		}
		out = append(out, done...)
		changes := make([]Change, len(done))
		for i, uid := range done {
			changes[i] = Change{Kind: MessageExpunged, Folder: name, UIDValidity: uv, UID: uid}
		}
		s.notify(addr, changes...)
	}
	if len(out) > 0 {
		s.log.Debug("mailstore: expunged", "address", addr, "folder", name, "messages", len(out))
	}
	return out, nil
}

// Copy copies the messages of folder from with the given UIDs to folder to
// (which may be the same), with their flags and internal dates. UIDs with no
// message are skipped. An error wraps ErrNoSuchFolder, or ErrOverQuota if
// the copies together would exceed the quota (then nothing is copied). If a
// batch fails after others were committed, the copies already made are
// removed again.
func (s *Store) Copy(ctx context.Context, address, from, to string, uids []uint32) (CopyResult, error) {
	return s.transfer(ctx, "copy", address, from, to, uids, false)
}

// Move moves the messages of folder from with the given UIDs to folder to:
// each batch of a few hundred messages is added to the destination and
// removed from the source atomically, so a failure can leave the set
// partly moved but never loses or duplicates a message. Quota is unchanged.
func (s *Store) Move(ctx context.Context, address, from, to string, uids []uint32) (CopyResult, error) {
	return s.transfer(ctx, "move", address, from, to, uids, true)
}

func (s *Store) transfer(ctx context.Context, op, address, from, to string, uids []uint32, move bool) (CopyResult, error) {
	addr, from, err := normalize(address, from)
	if err != nil {
		return CopyResult{}, fmt.Errorf("mailstore: %s: %w", op, err)
	}
	to, err = NormalizeFolder(to)
	if err != nil {
		return CopyResult{}, fmt.Errorf("mailstore: %s: %w", op, err)
	}
	if move && from == to {
		return CopyResult{}, fmt.Errorf("mailstore: move in %s %q: source and destination are the same: %w", addr, from, ErrInvalid)
	}
	if err := s.guard.Check(); err != nil {
		return CopyResult{}, fmt.Errorf("mailstore: %s in %s: %w", op, addr, err)
	}
	unlock := s.lock(addr)
	defer unlock()

	// Plan: the messages that exist, in batches, and the quota they need.
	var msgs []Message
	var dest folderRec
	var acct accountRec
	err = s.view(ctx, func(txn *badger.Txn) error {
		a, err := getAccount(txn, addr)
		if err != nil {
			return err
		}
		acct = a
		src, err := getFolder(txn, addr, from)
		if err != nil {
			return err
		}
		if dest, err = getFolder(txn, addr, to); err != nil {
			return err
		}
		for _, uid := range sortedUIDs(uids) {
			var m msgRec
			err := getJSON(txn, msgKey(pMeta, src.ID, uid), &m, ErrNoSuchMessage)
			if errors.Is(err, ErrNoSuchMessage) {
				continue
			}
			if err != nil {
				return err
			}
			msgs = append(msgs, m.message(uid))
		}
		return nil
	})
	if err != nil {
		return CopyResult{}, fmt.Errorf("mailstore: %s %s %q to %q: %w", op, addr, from, to, err)
	}
	res := CopyResult{UIDValidity: dest.UIDValidity}
	if !move {
		var total int64
		for _, m := range msgs {
			total += m.Size
		}
		if acct.Quota > 0 && acct.Used+total > acct.Quota {
			return CopyResult{}, fmt.Errorf("mailstore: copy %s %q to %q: %w", addr, from, to, ErrOverQuota)
		}
	}
	for len(msgs) > 0 {
		n, size := 0, int64(0)
		for n < len(msgs) && n < chunk && (n == 0 || size+msgs[n].Size <= chunkBytes) {
			size += msgs[n].Size
			n++
		}
		part := msgs[:n]
		msgs = msgs[n:]
		var srcUIDs, dstUIDs []uint32
		var changes []Change
		err := s.update(ctx, func(txn *badger.Txn) error {
			srcUIDs, dstUIDs, changes = srcUIDs[:0], dstUIDs[:0], changes[:0]
			a, err := getAccount(txn, addr)
			if err != nil {
				return err
			}
			src, err := getFolder(txn, addr, from)
			if err != nil {
				return err
			}
			dst := &src
			if to != from {
				d, err := getFolder(txn, addr, to)
				if err != nil {
					return err
				}
				dst = &d
			}
			if dst.UIDValidity != res.UIDValidity {
				return fmt.Errorf("destination replaced meanwhile: %w", ErrNoSuchFolder)
			}
			for _, m := range part {
				var rec msgRec
				err := getJSON(txn, msgKey(pMeta, src.ID, m.UID), &rec, ErrNoSuchMessage)
				if errors.Is(err, ErrNoSuchMessage) {
					continue
				}
				if err != nil {
					return err
				}
				item, err := txn.Get(msgKey(pBody, src.ID, m.UID))
				if err != nil {
					return fmt.Errorf("body of message %d: %w", m.UID, err)
				}
				body, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if move {
					if _, err := removeMessage(txn, &a, &src, m.UID); err != nil {
						return err
					}
					changes = append(changes, Change{Kind: MessageExpunged, Folder: from, UIDValidity: src.UIDValidity, UID: m.UID})
				}
				uid, err := addMessage(txn, &a, dst, body, rec, !move)
				if err != nil {
					return err
				}
				srcUIDs = append(srcUIDs, m.UID)
				dstUIDs = append(dstUIDs, uid)
				changes = append(changes, Change{Kind: MessageAdded, Folder: to, UIDValidity: dst.UIDValidity, UID: uid, Flags: rec.Flags})
			}
			folders := map[string]*folderRec{from: &src}
			folders[to] = dst
			return putRecords(txn, addr, a, folders)
		})
		if err != nil {
			err = fmt.Errorf("mailstore: %s %s %q to %q: %w", op, addr, from, to, err)
			if !move && len(res.DestUIDs) > 0 {
				if rerr := s.removeCopies(addr, to, res); rerr != nil {
					s.log.Error("mailstore: undoing a failed copy", "address", addr, "folder", to, "err", rerr)
				}
				return CopyResult{}, err
			}
			return res, err
		}
		res.SourceUIDs = append(res.SourceUIDs, srcUIDs...)
		res.DestUIDs = append(res.DestUIDs, dstUIDs...)
		s.notify(addr, changes...)
	}
	return res, nil
}

// removeCopies removes the copies a failed Copy made. The caller holds the
// address lock.
func (s *Store) removeCopies(addr, name string, res CopyResult) error {
	ctx := context.Background()
	uids := res.DestUIDs
	for len(uids) > 0 {
		part := uids[:min(chunk, len(uids))]
		uids = uids[len(part):]
		err := s.update(ctx, func(txn *badger.Txn) error {
			a, err := getAccount(txn, addr)
			if err != nil {
				return err
			}
			f, err := getFolder(txn, addr, name)
			if err != nil {
				return err
			}
			for _, uid := range part {
				if _, err := removeMessage(txn, &a, &f, uid); err != nil && !errors.Is(err, ErrNoSuchMessage) {
					return err
				}
			}
			return putRecords(txn, addr, a, map[string]*folderRec{name: &f})
		})
		if err != nil {
			return err
		}
		changes := make([]Change, len(part))
		for i, uid := range part {
			changes[i] = Change{Kind: MessageExpunged, Folder: name, UIDValidity: res.UIDValidity, UID: uid}
		}
		s.notify(addr, changes...)
	}
	return nil
}
