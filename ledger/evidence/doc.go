// Package evidence is the schema of what a PEC gestore's evidence log keeps:
// the PEC and system events (an [Event], its [Kind], its recipients and
// details), their validation, and the one canonical byte form of a
// numbered, chained [Entry] that ledger/FORMAT.md defines.
//
// It promises that [Entry.Encode] and [DecodeEntry] are exact inverses over
// canonical bytes: an entry has one encoding, DecodeEntry refuses any other
// spelling, and the bytes of existing entries never change (FORMAT.md,
// version [FormatVersion]). The details that are read back have accessors
// ([Event.Destinatario], [Event.Checkpoint], [Event.Outage], …) so that a
// key's name and the form of its value are written in one place.
//
// The package links no database and does no I/O: a verifier of exported
// evidence can use it alone.
package evidence
