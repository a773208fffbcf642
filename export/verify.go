package export

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// maxBundleFile bounds one file read from a bundle, and maxBundleFiles
// their number: a bundle is evidence from outside, treated as hostile.
const (
	maxBundleFile  = MaxBundleSize
	maxBundleFiles = 64
)

// Check is one verification step and its outcome, in words.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// VerifyReport is the outcome of verifying a bundle.
type VerifyReport struct {
	Checks []Check
	// Entry is the entry the bundle proves, when it could be read.
	Entry *ledger.Entry
	// Reproduction reports a receipt rebuilt from the log.
	Reproduction bool
}

// OK reports whether every check passed.
func (r *VerifyReport) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *VerifyReport) add(name string, err error, detail string) bool {
	c := Check{Name: name, OK: err == nil, Detail: detail}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

// VerifyOptions are the trust anchors of an offline verification.
type VerifyOptions struct {
	// Anchors are the trusted root certificates: of the gestore's
	// signatures (manifest, checkpoint, receipt), of the TSA, and of the
	// gestore that signed the receipt when it is another one. Required.
	// The copies inside the bundle are never trusted.
	Anchors []*x509.Certificate
}

// VerifyBundle checks an evidence bundle offline, with nothing but the
// bundle and the trust anchors: the manifest and its signature, the
// entry's canonical form, its inclusion in the checkpoint's tree, the
// checkpoint's signature and timestamp, and the receipt (its SHA-256 in
// the entry for an original, its signature). It returns a report of every
// check; an error only when the bundle cannot be read at all.
func VerifyBundle(r io.ReaderAt, size int64, opts VerifyOptions) (*VerifyReport, error) {
	return VerifyBundleParts([]Part{{R: r, Size: size}}, opts)
}

// Part is one ZIP file of a bundle written in parts (Bundle.WriteParts).
type Part struct {
	R    io.ReaderAt
	Size int64
}

// maxParts bounds the parts of one bundle.
const maxParts = 16

// VerifyBundleParts checks a bundle written in parts, given in any order,
// as VerifyBundle checks one: the pieces are joined first, and the split
// note is checked against them.
func VerifyBundleParts(parts []Part, opts VerifyOptions) (*VerifyReport, error) {
	if len(parts) == 0 || len(parts) > maxParts {
		return nil, fmt.Errorf("export: verify: %d parts; a bundle has 1 to %d", len(parts), maxParts)
	}
	files := map[string][]byte{}
	for i, p := range parts {
		if err := readZip(p.R, p.Size, files); err != nil {
			if len(parts) > 1 {
				err = fmt.Errorf("part %d: %w", i+1, err)
			}
			return nil, fmt.Errorf("export: verify: %w", err)
		}
	}
	if name, err := joinPieces(files, len(parts)); err != nil {
		rep := &VerifyReport{}
		rep.add("parts: the pieces of "+name+" join into the file the manifest lists, as SPLIT.txt says", err, "")
		return rep, nil
	}
	return verifyFiles(files, opts)
}

// readZip reads the files of one ZIP into files, refusing duplicates and
// anything larger than a bundle holds.
func readZip(r io.ReaderAt, size int64, files map[string][]byte) error {
	if size > MaxBundleSize+1<<20 {
		return fmt.Errorf("%d bytes, larger than a bundle can be", size)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("not a ZIP file: %w", err)
	}
	if len(files)+len(zr.File) > maxBundleFiles {
		return fmt.Errorf("%d files, more than a bundle has", len(files)+len(zr.File))
	}
	for _, f := range zr.File {
		if _, dup := files[f.Name]; dup {
			return fmt.Errorf("%s appears twice", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxBundleFile+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if len(b) > maxBundleFile {
			return fmt.Errorf("%s is larger than a bundle can be", f.Name)
		}
		files[f.Name] = b
	}
	return nil
}

// verifyFiles makes the checks of VerifyBundle on a bundle's files.
func verifyFiles(files map[string][]byte, opts VerifyOptions) (*VerifyReport, error) {
	if len(opts.Anchors) == 0 {
		return nil, fmt.Errorf("export: verify: no trust anchor")
	}
	roots := x509.NewCertPool()
	for _, c := range opts.Anchors {
		roots.AddCert(c)
	}
	tsaRoots := roots
	rep := &VerifyReport{}

	// 1. The manifest: every file listed, with its digest, and signed.
	listed := map[string]bool{}
	var manifestErr error
	for _, line := range strings.Split(strings.TrimRight(string(files[FileManifest]), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			manifestErr = fmt.Errorf("malformed manifest line %q", line)
			break
		}
		listed[name] = true
		data, present := files[name]
		got := sha256.Sum256(data)
		if !present {
			manifestErr = fmt.Errorf("%s is listed but missing", name)
			break
		}
		if hex.EncodeToString(got[:]) != sum {
			manifestErr = fmt.Errorf("%s has changed: its SHA-256 is %x, the manifest says %s", name, got, sum)
			break
		}
	}
	if manifestErr == nil {
		for name := range files {
			if !listed[name] && name != FileManifest && name != FileManifestSig {
				manifestErr = fmt.Errorf("%s is in the bundle but not in the manifest", name)
				break
			}
		}
	}
	if manifestErr == nil && len(listed) == 0 {
		manifestErr = fmt.Errorf("the manifest is missing or empty")
	}
	rep.add("manifest: every file has the SHA-256 the manifest lists, and nothing else is in the bundle", manifestErr, fmt.Sprintf("%d files", len(listed)))
	signer, err := ledger.VerifyDetached(files[FileManifest], files[FileManifestSig], roots, nil, time.Time{})
	rep.add("manifest signature: manifest.p7s is a valid CMS signature over manifest.sha256 by a certificate that chains to the trust anchor", err, signerName(signer))

	cp, cpErr := ledger.ParseCheckpointBody(files[FileCheckpoint])
	if doc, isExtract := files[FileExtract]; isExtract {
		// A log extract: every entry, canonical, in the checkpoint's tree.
		var x ExtractDoc
		err := json.Unmarshal(doc, &x)
		n := 0
		for i := 0; err == nil && i < len(x.Entries); i++ {
			raw := []byte(x.Entries[i].Entry)
			e, derr := ledger.DecodeEntry(raw)
			if derr != nil {
				err = fmt.Errorf("entry %d of the extract: %w", i, derr)
				break
			}
			if perr := verifyProof(raw, e, x.Entries[i].Proof, cp, cpErr); perr != nil {
				err = fmt.Errorf("entry %d (seq %d): %w", i, e.Seq, perr)
				break
			}
			n++
		}
		rep.add("extract: every entry of extract.json is canonical and in the tree whose root checkpoint.txt signs (RFC 6962)", err,
			fmt.Sprintf("%d entries of %s from %s to %s", n, x.Mailbox, x.From.Format(time.RFC3339), x.To.Format(time.RFC3339)))
	} else {
		// 2. The entry.
		entry, err := ledger.DecodeEntry(files[FileEntry])
		if rep.add("entry: entry.json is a ledger entry in its one canonical form", err, "") {
			rep.Entry = entry
			rep.add("entry content", nil, fmt.Sprintf("seq %d, %s, identificativo %s, %s", entry.Seq, entry.Kind, entry.Identificativo, entry.Time.UTC().Format(time.RFC3339)))
		}
		// 3. The proof to the checkpoint.
		var p Proof
		err = json.Unmarshal(files[FileProof], &p)
		if err == nil && entry != nil {
			err = verifyProof(files[FileEntry], entry, p, cp, cpErr)
		} else if err == nil {
			err = fmt.Errorf("no entry to prove")
		}
		rep.add("inclusion: SHA-256(0x00 || entry.json) with the audit path of proof.json gives the root that checkpoint.txt signs (RFC 6962)", err,
			fmt.Sprintf("leaf %d of %d", p.LeafIndex, p.TreeSize))
	}

	// 4. The checkpoint's timestamp, then its signature as of that time:
	// the token proves the signature existed then, when the gestore's
	// certificate was valid, however long ago.
	if cpErr != nil {
		rep.add("checkpoint: checkpoint.txt is a checkpoint", cpErr, "")
	} else {
		digest := sha256.Sum256(files[FileCheckpoint])
		info, err := tsa.Verify(files[FileCheckpointTSR], digest[:], tsa.VerifyOptions{Roots: tsaRoots})
		detail, at := "", time.Time{}
		if err == nil {
			detail, at = "time "+info.GenTime.UTC().Format(time.RFC3339), info.GenTime
		}
		rep.add("timestamp: checkpoint.tsr is an RFC 3161 token over SHA-256(checkpoint.txt) from a TSA that chains to the trust anchor", err, detail)
		signer, err := ledger.VerifyDetached(files[FileCheckpoint], files[FileCheckpointSig], roots, nil, at)
		rep.add("checkpoint signature: checkpoint.p7s is the gestore's CMS signature over checkpoint.txt, valid at the timestamp's time", err, signerName(signer))
	}

	// 5. The receipt (bundles only).
	if _, isExtract := files[FileExtract]; isExtract {
		return rep, nil
	}
	entry := rep.Entry
	receipt := files[FileReceipt]
	rep.Reproduction = bytes.Contains(headerOf(receipt), []byte("\nX-Riproduzione:")) || bytes.HasPrefix(receipt, []byte("X-Riproduzione:"))
	res, err := smime.Verify(receipt, smime.VerifyOptions{Roots: opts.Anchors, UseSigningTime: true, AllowSHA1Certificates: true})
	if err == nil && len(res.Reasons) > 0 {
		err = res.Reasons[0]
	}
	rep.add("receipt signature: receipt.eml is an S/MIME message signed by a certificate that chains to the trust anchor", err, signerName(certOf(res)))
	if entry != nil {
		sum := sha256.Sum256(receipt)
		switch {
		case rep.Reproduction:
			var embedErr error
			if !bytes.Contains(receipt, []byte("entry.json")) {
				embedErr = fmt.Errorf("the reproduction does not carry the entry")
			}
			rep.add("receipt: a REPRODUCTION from the log, not the original (which the archivio di sicurezza does not hold)", embedErr, "")
		case bytes.Equal(sum[:], entry.SHA256):
			rep.add("receipt: the ORIGINAL, byte for byte: its SHA-256 is the one the entry records", nil, hex.EncodeToString(sum[:]))
		default:
			rep.add("receipt: its SHA-256 is the one the entry records", fmt.Errorf("receipt.eml has SHA-256 %x, the entry records %x", sum, entry.SHA256), "")
		}
	}
	return rep, nil
}

func verifyProof(raw []byte, e *ledger.Entry, p Proof, cp *ledger.Checkpoint, cpErr error) error {
	if cpErr != nil {
		return fmt.Errorf("checkpoint.txt: %w", cpErr)
	}
	leaf := ledger.LeafHash(raw)
	if hex.EncodeToString(leaf[:]) != p.LeafHash {
		return fmt.Errorf("leaf hash %x, proof.json says %s", leaf, p.LeafHash)
	}
	if p.LeafIndex != e.Seq {
		return fmt.Errorf("proof for leaf %d, the entry is %d", p.LeafIndex, e.Seq)
	}
	if p.TreeSize != cp.Size || p.Root != hex.EncodeToString(cp.Root[:]) {
		return fmt.Errorf("proof for tree %d with root %s, the checkpoint signs %d with root %x", p.TreeSize, p.Root, cp.Size, cp.Root)
	}
	var hashes [][]byte
	for _, h := range p.Hashes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return fmt.Errorf("bad hash %q in proof.json", h)
		}
		hashes = append(hashes, b)
	}
	if p.LeafIndex >= p.TreeSize {
		return fmt.Errorf("leaf %d outside a tree of %d", p.LeafIndex, p.TreeSize)
	}
	return proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, leaf[:], hashes, cp.Root[:])
}

func headerOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i]
	}
	return msg
}

func signerName(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return "signed by " + c.Subject.String()
}

func certOf(r *smime.Result) *x509.Certificate {
	if r == nil {
		return nil
	}
	return r.Signer
}
