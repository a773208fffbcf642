// Package bundle verifies, offline, the evidence bundles and log extracts
// that package export writes (export/BUNDLE.md): what a court's expert
// runs years later, with the bundle and the trust anchors alone.
//
// [Verify] and [VerifyParts] check, in the order BUNDLE.md gives, the
// signed manifest, who signs (the gestore's signing certificate the bundle
// names, in its role), the entry and its inclusion proof, the checkpoints,
// their RFC 3161 tokens and CMS signatures, each signature at its
// timestamp's time (CAdES-T) and never at the signingTime it claims, the
// event's delay, and the receipt: the original, or a reproduction bound
// to its entry. A bundle written in parts is joined first and its
// SPLIT.txt rebuilt ([SplitNote]) and compared. The file names, proof.json
// ([ProofDoc]) and extract.json ([ExtractDoc]) are defined here, and the
// building side imports them.
//
// It is a package of its own, beside package verify's checks of the log
// itself (tree, chain, checkpoint, segment), because a bundle adds a ZIP,
// S/MIME and MIME parsing and a report that those do not need. Like
// package verify it links no database: go list -deps of it names no
// badger, a test keeps it so. Bad input gets a failed check or an error
// naming what is wrong, never a panic.
package bundle
