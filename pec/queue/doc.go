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
// process or a power loss. Concurrent calls are committed together, like
// the group commit of a database: one committer writes the items of all
// the calls waiting for it into one new batch file in a temporary
// directory, fsyncs it, renames it into place and fsyncs the directory;
// then each of these calls returns. A batch file is therefore either
// entirely present or absent, whatever the instant of a crash, and two
// fsyncs serve any number of calls; temporary files left by a crash are
// deleted by [Open]. Each record of a batch file, one per item, holds a
// checksummed header (JSON) and the message bytes.
//
// When the queue is done with an item (delivered, or undeliverable), it
// appends a mark to the done file of the item's batch, without an fsync,
// and deletes the batch file, again without an fsync, once all of its
// items are done. An operating system crash or a power loss may lose such
// marks and deletions: the items come back at the next Open and are
// delivered again; so are items whose delivery a crash interrupted before
// the mark. Delivery is thus at least once, and the delivery function must
// tolerate a repeated item, which keeps its ID (the gestore deduplicates
// on it). [Queue.Remove] is the exception: it
// fsyncs its mark, and keeps it until the deletion of the batch file is
// durable, so that an item it took back is never delivered.
//
// [Open] rebuilds the queue from the batch files and their done files,
// and verifies every record. A batch file with a damaged record, or a file
// that the queue did not write, is moved into the damaged/ subdirectory
// and reported with a warning on the Logger naming it, never deleted; the
// intact records of a damaged batch that are not done are first copied
// into a new batch file. A record found damaged later, when its item is
// due, is not delivered, and its batch file is moved into damaged/ once
// its other items are done. Delivery attempts, the time of the next one
// and the last error are kept in a small state file beside the batch,
// written without an fsync of the directory, so that a retry does not
// rewrite the message: losing it only makes an attempt come sooner.
//
// # Delivery
//
// [Queue.Run] hands due items to the delivery function, up to
// Options.Workers at a time, oldest first. Success removes the item (at
// least once: see above). An error wrapped in a [PermanentError] removes it
// too, after Options.OnPermanent (where the gestore builds the avviso di
// mancata consegna). Any other error is a temporary failure: the item is
// retried after a backoff that starts at Options.MinBackoff and doubles, up
// to Options.MaxBackoff, with every failure of the item.
//
// One item's failures never delay another item. Only an error wrapped in a
// [DestinationError] (the destination could not be reached at all) is a
// failure of the destination: then the destination's backoff grows with
// every round of such failures, and only one of its items is attempted at
// a time, as a probe; the first attempt on which the destination answers
// (a success, or a failure of the item alone) makes all of its items due
// again. [Queue.KickDestination] does the same on demand. A destination
// reached in process, such as the gestore's "local" one, is never backed
// off: its delivery function never returns a DestinationError.
//
// The queue sets no age limit of its own: the delivery function sees
// Item.Enqueued and ends an item that is too old by returning a
// PermanentError (the gestore ends every item 24 hours after it was
// queued, with a recorded outcome; see pec/gestore).
//
// # Layout
//
// Options.Dir holds items/, tmp/, damaged/ and a lock file that keeps a
// second process from opening the same queue. items/ holds the batch files
// (SEQ.batch, SEQ a 16-digit hexadecimal sequence number that grows with
// each batch written), their done files (SEQ.batch.done) and the state
// files (ID.state, the ID with "/" written as "%"). An item file of the
// first layout of the queue (ID.item, one item per file) is read as a
// batch of one item.
package queue
