// Package verify holds the offline checks of a custode ledger's evidence:
// what a court's expert runs years later, with no database and no access to
// the gestore.
//
// It checks, from bytes alone: the RFC 6962/9162 hashes of the Merkle tree
// ([LeafHash], [HashChildren]) and its inclusion and consistency proofs
// ([Inclusion], [Consistency]); the chain of prev hashes over a run of
// canonical entries ([Chain]); a checkpoint's signed text
// ([ParseCheckpointBody]), its CMS signature ([VerifyDetached]) and RFC 3161
// token ([Checkpoint.Verify]) and its link to the checkpoint before it
// ([Checkpoint.Follows]); and a sealed segment ([ParseSegment],
// [Segment.Check]). The byte forms are those of ledger/FORMAT.md; the
// entries themselves are package evidence's. The evidence bundles and log
// extracts of export/BUNDLE.md are verified by the subpackage bundle, on
// top of these checks (cmd/custode-verify runs it).
//
// It promises to link no database: go list -deps of it names no badger, a
// test keeps it so. Every check returns an error naming what is wrong
// (an entry's sequence number, a checkpoint's size, a segment's range),
// never panics on bad input, and trusts only the anchors it is given.
package verify
