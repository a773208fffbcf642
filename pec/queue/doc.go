// Package queue is the durable outbound mail queue of a PEC gestore. The
// gestore enqueues what it must send (a busta di trasporto to another
// gestore, the ricevute and avvisi to its own users) before it answers 250
// to the message that caused them; a runner then delivers each item, with
// retries and exponential backoff per destination, until it is delivered or
// fails for good.
//
// # Durability
//
// When [Queue.Enqueue] returns nil, its items survive a crash of the
// process or a power loss: each is written to a file of its own in a
// temporary directory, fsynced, renamed into place, and the directory is
// fsynced once for the whole call. An item is therefore either entirely
// present or absent, whatever the instant of a crash; temporary files left
// by one are deleted by [Open]. A delivered item is removed, and the removal
// made durable, before the runner goes on; a crash between a delivery and
// its removal repeats the delivery (at-least-once).
//
// Each item file holds a checksummed header (JSON) and the message bytes.
// [Open] verifies every file: one that is damaged, or that the queue did
// not write, is moved into the damaged/ subdirectory and reported with a
// warning on the Logger, never deleted. Delivery attempts, the time of the
// next one and the last error are kept in a small state file beside the
// item, so that a retry does not rewrite the message.
//
// # Delivery
//
// [Queue.Run] hands due items to the delivery function, up to
// Options.Workers at a time, oldest first. Success removes the item. An
// error wrapped in a [PermanentError] removes it too, after
// Options.OnPermanent (where the gestore builds the avviso di mancata
// consegna). Any other error is a temporary failure: the item is retried
// after a backoff that starts at Options.MinBackoff and doubles, up to
// Options.MaxBackoff, with every failure of the item and with every round of
// failures of its destination. While a destination is failing, only one of
// its items is attempted at a time, as a probe; its first success makes all
// of its items due again. [Queue.KickDestination] does the same on demand.
//
// # Layout
//
// Options.Dir holds items/ (ID.item and ID.state files, the ID with "/"
// written as "%"), tmp/, damaged/ and a lock file that keeps a second
// process from opening the same queue.
package queue
