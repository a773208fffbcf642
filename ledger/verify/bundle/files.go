package bundle

import "time"

// MaxSize is the most a bundle, or one part of it, takes as written:
// 29,000,000 bytes, leaving 1,000,000 bytes of room under the 30 MB
// (30,000,000 bytes) of a deposit in the processo civile telematico.
const MaxSize = 29_000_000

// MaxDeposit is the most a verifier accepts of one ZIP file: the
// 30,000,000 bytes of a deposit in the processo civile telematico.
const MaxDeposit = 30_000_000

// Files of an evidence bundle (export/BUNDLE.md).
const (
	FileReceipt       = "receipt.eml"
	FileEntry         = "entry.json"
	FileProof         = "proof.json"
	FileCheckpoint    = "checkpoint.txt"
	FileCheckpointSig = "checkpoint.p7s"
	FileCheckpointTSR = "checkpoint.tsr"
	// The first timestamped checkpoint that covers the entry, which dates
	// the event (BUNDLE.md §5): its body, signature and token.
	FileFirstCheckpoint    = "first-checkpoint.txt"
	FileFirstCheckpointSig = "first-checkpoint.p7s"
	FileFirstCheckpointTSR = "first-checkpoint.tsr"
	FileGestoreCert        = "certs/gestore.pem"
	FileGestoreCA          = "certs/gestore-ca.pem"
	FileTSACA              = "certs/tsa-ca.pem"
	FileAttestation        = "attestation.txt"
	FileAttestPDF          = "attestation.pdf"
	FileHowTo              = "VERIFY.txt"
	FileManifest           = "manifest.sha256"
	FileManifestSig        = "manifest.p7s"
	// FileProofScript is the short Python script (standard library only)
	// that VERIFY.txt runs to check the Merkle inclusion (RFC 9162
	// §2.1.3.2) and the receipt's binding to the entry.
	FileProofScript = "verify_proof.py"
	// FileSplitNote is the note the first part of a bundle written in
	// parts carries: which files are cut into pieces, the pieces' digests,
	// and how to join them (its exact format is in BUNDLE.md and
	// SplitNote). The manifest of a bundle written in parts lists it,
	// beside the whole files, so the gestore's signature covers it; a
	// verifier also rebuilds it from the pieces and requires it byte for
	// byte.
	FileSplitNote = "SPLIT.txt"
)

// Files of a log extract (export/BUNDLE.md).
const (
	FileExtract     = "extract.json"
	FileExtractCSV  = "extract.csv"
	FileExtractLog  = "extract.log"
	FileExtractHTML = "extract.html"
	FileExtractPDF  = "extract.pdf"
)

// Proof is an entry's inclusion proof to a checkpoint, as proof.json and
// extract.json hold it.
type Proof struct {
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	LeafHash  string   `json:"leaf_hash"` // hex SHA-256(0x00 || entry.json)
	Root      string   `json:"root"`      // hex, equal to the checkpoint's
	Hashes    []string `json:"hashes"`    // hex, RFC 6962 audit path, leaf to root
}

// ProofDoc is proof.json of a bundle: the entry's inclusion proof to the
// newest checkpoint (checkpoint.txt), the RFC 9162 §2.1.4 consistency
// proof from the first timestamped checkpoint that covers the entry
// (first-checkpoint.txt) to it, and the checkpoint interval the delay
// bound is made of (BUNDLE.md §5).
type ProofDoc struct {
	Proof
	FirstTreeSize uint64   `json:"first_tree_size"` // the first checkpoint's size
	FirstRoot     string   `json:"first_root"`      // hex, equal to the first checkpoint's
	Consistency   []string `json:"consistency"`     // hex, RFC 9162 §2.1.4.1 proof from first_tree_size to tree_size
	// IntervalMS is the ledger's checkpoint interval in milliseconds: a
	// new entry is covered by a checkpoint at most this long after it.
	IntervalMS int64 `json:"checkpoint_interval_ms"`
}

// ExtractEntry is one transaction of a log extract, with its proof.
type ExtractEntry struct {
	// Entry is the canonical entry, as a JSON string of its exact bytes.
	Entry string `json:"entry"`
	// Proof is its inclusion proof to the extract's checkpoint.
	Proof Proof `json:"proof"`
}

// ExtractDoc is extract.json.
type ExtractDoc struct {
	Mailbox  string         `json:"mailbox"`
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
	Produced time.Time      `json:"produced"`
	Entries  []ExtractEntry `json:"entries"`
}
