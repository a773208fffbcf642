package gestore

import (
	"context"

	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/queue"
)

// Ledger is what the gestore needs of the evidence log: it appends the
// events of each step, durably, before the step's reply, and reads back
// the entries of a transaction (the idempotent presa in carico, the
// check that a queued message was recorded) and, as the tracker, the
// entries after its cursor. *ledger.Ledger is one.
type Ledger interface {
	TrackerLedger
	// Append writes events, in order, durably: when it returns nil they
	// are in the log and will be found by Find and EntriesFrom. It
	// returns their sequence numbers.
	Append(ctx context.Context, events ...ledger.Event) ([]uint64, error)
}

// Outbox is the durable queue of the messages the gestore emits.
// *queue.Queue is one.
type Outbox interface {
	// Enqueue stores items durably, all or none; an item whose ID is
	// already queued fails the call with an error wrapping
	// queue.ErrExists.
	Enqueue(ctx context.Context, items ...queue.Item) error
	// Remove takes the item id out of the queue, durably; it fails with
	// an error wrapping queue.ErrNotFound if the queue does not hold id.
	Remove(ctx context.Context, id string) error
	// Run calls deliver for each item when it is due, until ctx is done:
	// nil removes the item, a queue.PermanentError drops it, any other
	// error retries it later.
	Run(ctx context.Context, deliver func(ctx context.Context, it queue.Item) error) error
}

// Mailboxes is the store of the mailboxes of the gestore's domains.
// *mailstore.Store is one.
type Mailboxes interface {
	// Login checks a titolare's credentials; its error wraps
	// mailstore.ErrAuthFailed, or is a *mailstore.ThrottledError.
	Login(ctx context.Context, a mailstore.LoginAttempt) error
	// Mailbox describes the mailbox address; its error wraps
	// mailstore.ErrNoSuchMailbox if there is none.
	Mailbox(ctx context.Context, address string) (mailstore.MailboxInfo, error)
	// Deliver stores a message durably; a Delivery with a Key already
	// delivered to its address stores nothing (see mailstore.Delivery).
	// Its error wraps mailstore.ErrNoSuchMailbox, ErrNoSuchFolder,
	// ErrOverQuota or ErrInvalid.
	Deliver(ctx context.Context, d mailstore.Delivery) (mailstore.Delivered, error)
	// CreateFolder creates the folder name in the mailbox address; its
	// error wraps mailstore.ErrFolderExists if there is one.
	CreateFolder(ctx context.Context, address, name string) error
}

// Archiver is the archive hook: it keeps, byte-identical, a signed message
// the gestore produced or received, if the policy of mailbox asks for the
// archivio di sicurezza. It returns the key the message is kept under, or
// "" when the mailbox's messages are not archived. A returned key must be
// durable (stored, or queued durably for the archive) when Archive returns:
// it is written in the ledger entry. *sicurezza.Archive is one.
type Archiver interface {
	Archive(ctx context.Context, m ArchivedMessage) (key string, err error)
}

// ArchivedMessage is what the archive hook receives. It is declared by the
// archivio di sicurezza, below the gestore, so that the archive does not
// depend on the gestore.
type ArchivedMessage = sicurezza.Message
