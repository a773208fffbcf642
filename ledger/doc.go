// Package ledger is the append-only evidence log of a PEC gestore.
//
// Every PEC transaction and every action of the system itself is an [Event].
// Appended events become entries: each is stored in one canonical byte form
// (see FORMAT.md), commits to the hash of its predecessor, and is a leaf of an
// RFC 6962/9162 Merkle tree whose signed, timestamped checkpoints let a third
// party verify any single entry years later. [Ledger.Append] returns only once
// the entries are durable on disk; concurrent appenders share fsyncs.
//
// The event schema and the canonical form are package
// [github.com/custode/custode/ledger/evidence]; the checks that need no
// database (tree hashes, proofs, the chain, checkpoint bodies, signatures and
// tokens, sealed segments) are package
// [github.com/custode/custode/ledger/verify]. This package is the engine that
// stores entries and checkpoints and calls those checks; its names for their
// types ([Entry], [Event], [Checkpoint], [Segment], …) are aliases.
//
// The bytes go to a [github.com/custode/custode/ledger/driver.Driver]: by
// default a badger store in Dir/entries (package ledger/driver/badger), or
// the one given as [Options.Driver] (package ledger/driver/mem for tests).
// The keys and values are FORMAT.md's whatever the driver. Appends are made
// durable by the ledger's own write-ahead journal, not by the driver's Sync:
// the driver benchmark puts it at parity with synced driver batches (see
// journal.go for the numbers and what would decide dropping it).
package ledger
