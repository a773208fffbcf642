// Package mailstore is the durable mailbox store of the PEC gestore: the
// accounts of the titolari (address, password hash, quota), their folders and
// the messages in them.
//
// A [Store] keeps everything in one badger database opened with synchronous
// writes: account records, folder records, message metadata, a copy of each
// message's header and the message bytes themselves (which badger keeps in
// its value log). Every change is one badger transaction, committed and
// fsynced before the call returns, so a crash at any instant leaves either
// the state before the change or the state after it: a message is never
// counted in a quota without being stored, nor stored without being counted.
//
// Messages are addressed as in IMAP: each folder has a UIDVALIDITY, unique
// across the store and never reused, and gives its messages strictly
// ascending UIDs. [Store.Watch] reports every change to an account, in
// commit order, so that an IMAP server can tell idling clients about new
// messages, expunges and flag changes.
//
// Changes to one mailbox are serialised (deliveries to different mailboxes
// share badger's group commits); operations on many messages (expunge, copy,
// move, flag changes) commit a few hundred messages per transaction, each
// batch atomic. Deleting a folder adjusts the quota at once and leaves its
// messages, already unreachable, to a background purge, which a crash
// resumes at the next Open; the value log is garbage-collected in the
// background too. [Store.Check] verifies all of this on a whole store.
//
// Passwords are stored as PBKDF2-SHA256 hashes
// ("pbkdf2-sha256$iterations$salt$hash") and compared in constant time.
// Failed logins are throttled as Dovecot's auth penalty does
// ([Store.Login]): progressive delays per (address, remote address) and per
// remote address, answered with "come back at" errors rather than sleeps,
// kept in the database so that a restart keeps them, and bounded in size.
// They are counted in the ledger (Options.Ledger), at most one
// login-failures event per address, remote address and window.
//
// A Store is safe for concurrent use by many goroutines. One process at a time
// may open a data directory.
package mailstore
