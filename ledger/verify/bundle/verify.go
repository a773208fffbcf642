package bundle

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custode/custode/ledger/evidence"
	"github.com/custode/custode/ledger/verify"
	"github.com/custode/custode/tsa"
)

// maxBundleFile bounds one file read from a bundle (uncompressed: a
// receipt.eml carrying a 30 MiB original compresses into a part), and
// maxBundleFiles their number; all the files of a bundle together are at
// most maxJoinedFile. A bundle is evidence from outside, treated as
// hostile.
const (
	maxBundleFile  = 64 << 20
	maxBundleFiles = 64
)

// zipLimits are the bounds readZip holds a part to: its size, one file's
// and all the files' together.
type zipLimits struct {
	part        int64
	file, total int
}

// bundleLimits are the limits of BUNDLE.md §2.
var bundleLimits = zipLimits{part: MaxDeposit, file: maxBundleFile, total: maxJoinedFile}

// Check is one verification step and its outcome, in words.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// SignatureTime says at what time one signature of a bundle was
// validated, and why that time.
type SignatureTime struct {
	// File is the signature's file: manifest.p7s, checkpoint.p7s or
	// receipt.eml.
	File string
	// Signer is the certificate that made the signature.
	Signer *x509.Certificate
	// At is the time the signer's certificate and chain were checked at.
	At time.Time
	// Source says where At comes from: "signature timestamp" (a CAdES
	// signature-time-stamp token over the signature value), "checkpoint
	// timestamp" (checkpoint.tsr), "first checkpoint timestamp"
	// (first-checkpoint.tsr) or "current time".
	Source string
	// Earlier reports a checkpoint signed by an earlier signing
	// certificate of the same gestore, not by certs/gestore.pem
	// (SameGestore): made before the gestore renewed its certificate.
	Earlier bool
}

// Report is the outcome of verifying a bundle.
type Report struct {
	Checks []Check
	// Entry is the entry the bundle proves, when it could be read.
	Entry *evidence.Entry
	// Reproduction reports a receipt rebuilt from the log.
	Reproduction bool
	// Gestore is the gestore's signing certificate the bundle names
	// (certs/gestore.pem), when it could be read.
	Gestore *x509.Certificate
	// Times lists each signature checked and the time it was validated at.
	Times []SignatureTime
	// FirstTimestamp is the genTime of first-checkpoint.tsr, the first
	// timestamp that covers the entry, when it verified.
	FirstTimestamp time.Time
	// EventDelay is FirstTimestamp minus the entry's riferimento
	// temporale, and DelayBound the bound it is held to (BUNDLE.md §5),
	// when both could be read.
	EventDelay, DelayBound time.Duration
	// Imported reports an entry marked imported (appended by hand): its
	// delay is reported, not held to the bound.
	Imported bool
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *Report) add(name string, err error, detail string) bool {
	c := Check{Name: name, OK: err == nil, Detail: detail}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
	return err == nil
}

// Options are the trust anchors of an offline verification.
type Options struct {
	// Anchors are the trusted root certificates: of the gestore's
	// signatures (manifest, checkpoint, reproduction), of the TSA, and of
	// the gestore that signed an original receipt when it is another one.
	// Required. The copies inside the bundle are never trusted.
	Anchors []*x509.Certificate
	// Gestore, if not nil, pins the gestore's signing certificate: the
	// bundle must name exactly this certificate (custode verify -gestore).
	// Without it, any certificate under the anchors with the role of a
	// gestore's signing certificate is accepted, and the report names it.
	Gestore *x509.Certificate
	// Now is the current time, at which a signature that carries no
	// timestamp token is validated; zero means time.Now().
	Now time.Time
}

// Verify checks an evidence bundle offline, with nothing but the
// bundle and the trust anchors, in the order BUNDLE.md gives: the
// manifest, the gestore's certificate and its signature over the
// manifest, the entry's canonical form, its inclusion in the newest
// checkpoint's tree, that checkpoint's timestamp and signature, the first
// checkpoint that covers the entry (its timestamp and signature, its
// consistency with the newest) and the event's delay (its first
// timestamp minus its riferimento temporale, held to the checkpoint
// interval plus EventDelaySlack unless the entry is imported, and never
// below -ClockTolerance), and the receipt (its
// SHA-256 in the entry for an original; for a reproduction, the gestore's
// signature and the entry it carries). Every gestore signature must be by
// the certificate certs/gestore.pem names, and is validated at its
// timestamp token's time, never at the signingTime the signer claims. It
// returns a report of every check; an error only when the bundle cannot
// be read at all.
func Verify(r io.ReaderAt, size int64, opts Options) (*Report, error) {
	return VerifyParts([]Part{{R: r, Size: size}}, opts)
}

// Part is one ZIP file of a bundle written in parts (export.Bundle.WriteParts).
type Part struct {
	R    io.ReaderAt
	Size int64
}

// maxParts bounds the parts of one bundle.
const maxParts = 16

// VerifyParts checks a bundle written in parts, given in any order,
// as Verify checks one: the pieces are joined first, and the split
// note is checked against them (and, like every file, against the
// manifest).
func VerifyParts(parts []Part, opts Options) (*Report, error) {
	if len(parts) == 0 || len(parts) > maxParts {
		return nil, fmt.Errorf("bundle: verify: %d parts; a bundle has 1 to %d", len(parts), maxParts)
	}
	files := map[string][]byte{}
	for i, p := range parts {
		if err := readZip(p.R, p.Size, files, bundleLimits); err != nil {
			if len(parts) > 1 {
				err = fmt.Errorf("part %d: %w", i+1, err)
			}
			return nil, fmt.Errorf("bundle: verify: %w", err)
		}
	}
	if name, err := joinPieces(files, len(parts)); err != nil {
		rep := &Report{}
		rep.add("parts: the pieces of "+name+" join into the file the manifest lists, as SPLIT.txt says", err, "")
		return rep, nil
	}
	return verifyFiles(files, opts)
}

// readZip reads the files of one ZIP into files, refusing duplicates and
// anything larger than a bundle holds.
func readZip(r io.ReaderAt, size int64, files map[string][]byte, lim zipLimits) error {
	if size > lim.part {
		return fmt.Errorf("%d bytes, larger than a bundle part can be (%d)", size, lim.part)
	}
	total := 0
	for _, b := range files {
		total += len(b)
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
		b, err := io.ReadAll(io.LimitReader(rc, int64(lim.file)+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if len(b) > lim.file {
			return fmt.Errorf("%s is larger than a bundle can be", f.Name)
		}
		if total += len(b); total > lim.total {
			return fmt.Errorf("%s: the files of the bundle come to more than %d bytes", f.Name, lim.total)
		}
		files[f.Name] = b
	}
	return nil
}

// Mandatory files: a verifier cannot check a bundle (or an extract)
// without them. Every other file is optional, but, like these, must be
// listed in the manifest with its SHA-256.
var (
	mandatoryCommon  = []string{FileManifest, FileManifestSig, FileGestoreCert, FileCheckpoint, FileCheckpointSig, FileCheckpointTSR}
	mandatoryBundle  = []string{FileReceipt, FileEntry, FileProof, FileFirstCheckpoint, FileFirstCheckpointSig, FileFirstCheckpointTSR}
	mandatoryExtract = []string{FileExtract}
)

// manifestLine is one line of manifest.sha256, without its "\n".
var manifestLine = regexp.MustCompile(`^([0-9a-f]{64})  ([!-~]+)$`)

// checkManifest checks manifest.sha256 against the files: its exact form,
// every file listed with its SHA-256, none missing or unlisted, and the
// mandatory ones present. It returns the number of files listed.
func checkManifest(files map[string][]byte) (int, error) {
	m, ok := files[FileManifest]
	if !ok || len(m) == 0 {
		return 0, fmt.Errorf("%s is missing or empty", FileManifest)
	}
	if !bytes.HasSuffix(m, []byte("\n")) {
		return 0, fmt.Errorf("%s does not end with a newline", FileManifest)
	}
	listed := map[string]bool{}
	prev := ""
	for i, line := range strings.Split(string(m[:len(m)-1]), "\n") {
		sub := manifestLine.FindStringSubmatch(line)
		if sub == nil {
			return 0, fmt.Errorf("%s line %d is not \"<64 lower-case hex>  <name>\": %q", FileManifest, i+1, line)
		}
		sum, name := sub[1], sub[2]
		if name == FileManifest || name == FileManifestSig {
			return 0, fmt.Errorf("%s line %d lists %s, which it cannot", FileManifest, i+1, name)
		}
		if i > 0 && name <= prev {
			return 0, fmt.Errorf("%s is not sorted by name: line %d (%s) comes after %s", FileManifest, i+1, name, prev)
		}
		prev = name
		listed[name] = true
		data, present := files[name]
		if !present {
			return 0, fmt.Errorf("%s is listed in %s but missing from the bundle", name, FileManifest)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			return 0, fmt.Errorf("%s has changed: its SHA-256 is %x, %s says %s", name, got, FileManifest, sum)
		}
	}
	for name := range files {
		if !listed[name] && name != FileManifest && name != FileManifestSig {
			return 0, fmt.Errorf("%s is in the bundle but not in %s", name, FileManifest)
		}
	}
	need := mandatoryBundle
	if _, ok := files[FileExtract]; ok {
		need = mandatoryExtract
	}
	for _, n := range append(append([]string(nil), mandatoryCommon...), need...) {
		if _, ok := files[n]; !ok {
			return 0, fmt.Errorf("%s is missing: a bundle must have it", n)
		}
	}
	return len(listed), nil
}

// verifyFiles makes the checks of Verify on a bundle's files.
func verifyFiles(files map[string][]byte, opts Options) (*Report, error) {
	if len(opts.Anchors) == 0 {
		return nil, fmt.Errorf("bundle: verify: no trust anchor")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	roots := x509.NewCertPool()
	for _, c := range opts.Anchors {
		roots.AddCert(c)
	}
	rep := &Report{}
	_, isExtract := files[FileExtract]

	// 1. The manifest: every file listed, with its digest.
	n, err := checkManifest(files)
	rep.add("manifest: manifest.sha256 lists every file of the bundle, sorted, with its SHA-256, and nothing else is in the bundle", err, fmt.Sprintf("%d files", n))

	// 2. The gestore: the certificate the bundle names, in its role.
	gestore, err := namedGestore(files[FileGestoreCert], opts.Gestore)
	detail := ""
	if err == nil {
		rep.Gestore = gestore
		detail = describeGestore(gestore)
	}
	rep.add("gestore: certs/gestore.pem is one certificate with the role of a gestore's signing certificate (e-mail protection, the gestore's service address; not a TLS server's, not a TSA's)", err, detail)

	// 3. The manifest's signature, by that certificate.
	st, err := verifyGestoreCMS(FileManifestSig, files[FileManifest], files[FileManifestSig], gestore, roots, now, "current time")
	rep.addSignature(st, err, "manifest signature: manifest.p7s is the gestore's CMS signature over manifest.sha256, by the certificate certs/gestore.pem, valid at its timestamp's time (or now, without one)")

	cp, cpErr := verify.ParseCheckpointBody(files[FileCheckpoint])
	var entry *evidence.Entry
	var bp *ProofDoc
	if isExtract {
		// 4. A log extract: every entry, canonical, in the checkpoint's tree.
		x, err := parseExtract(files[FileExtract])
		n := 0
		for i := 0; err == nil && i < len(x.Entries); i++ {
			raw := []byte(x.Entries[i].Entry)
			e, derr := decodeEntry(raw)
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
		detail := ""
		if x != nil {
			detail = fmt.Sprintf("%d entries of %s from %s to %s", n, x.Mailbox, x.From.Format(time.RFC3339), x.To.Format(time.RFC3339))
		}
		rep.add("extract: every entry of extract.json is canonical and in the tree whose root checkpoint.txt signs (RFC 9162 §2.1.3.2)", err, detail)
	} else {
		// 4. The entry.
		e, err := decodeEntry(files[FileEntry])
		if rep.add("entry: entry.json is a ledger entry in its one canonical form (ledger/FORMAT.md)", err, "") {
			entry = e
			rep.Entry = e
			rep.add("entry content", nil, fmt.Sprintf("seq %d, %s, identificativo %s, riferimento temporale %s", e.Seq, e.Kind, e.Identificativo, e.Time.UTC().Format(time.RFC3339Nano)))
		}
		// 5. The proof to the checkpoint.
		p, err := parseProof(files[FileProof])
		bp = p
		if err == nil && entry != nil {
			err = verifyProof(files[FileEntry], entry, p.Proof, cp, cpErr)
		} else if err == nil {
			err = fmt.Errorf("no entry to prove")
		}
		detail := ""
		if p != nil {
			detail = fmt.Sprintf("leaf %d of %d", p.LeafIndex, p.TreeSize)
		}
		rep.add("inclusion: SHA-256(0x00 || entry.json) folded with the audit path of proof.json (RFC 9162 §2.1.3.2) gives the root that checkpoint.txt signs", err, detail)
	}

	// 6. The checkpoint's timestamp, then its signature as of that time:
	// the token proves the body existed then, signed by the certificate
	// that also signs the manifest.
	var cpTime time.Time
	if cpErr != nil {
		rep.add("checkpoint: checkpoint.txt is a checkpoint (ledger/FORMAT.md §5)", cpErr, "")
	} else {
		digest := sha256.Sum256(files[FileCheckpoint])
		info, err := tsa.Verify(files[FileCheckpointTSR], digest[:], tsa.VerifyOptions{Roots: roots})
		detail := ""
		if err != nil {
			err = fmt.Errorf("checkpoint.tsr is not a valid token over SHA-256(checkpoint.txt) by a TSA under the anchor: %w", err)
		} else {
			cpTime = info.GenTime
			detail = "time " + info.GenTime.UTC().Format(time.RFC3339Nano) + ", TSA " + info.Certificate.Subject.String()
		}
		rep.add("timestamp: checkpoint.tsr is an RFC 3161 token over SHA-256(checkpoint.txt) from a TSA that chains to the trust anchor", err, detail)
		if err != nil {
			err = fmt.Errorf("checkpoint.p7s: no valid checkpoint.tsr to validate it at")
			rep.add("checkpoint signature: checkpoint.p7s is the gestore's CMS signature over checkpoint.txt, by certs/gestore.pem or an earlier certificate of the same gestore, valid at the timestamp's time", err, "")
		} else {
			st, err := verifyCheckpointCMS(FileCheckpointSig, files[FileCheckpoint], files[FileCheckpointSig], gestore, roots, cpTime, "checkpoint timestamp")
			rep.addSignature(st, err, "checkpoint signature: checkpoint.p7s is the gestore's CMS signature over checkpoint.txt, by certs/gestore.pem or an earlier certificate of the same gestore, valid at the timestamp's time")
		}
	}

	// 7. The event's time (bundles only): the first timestamped
	// checkpoint that covers the entry, its consistency with the newest,
	// and the delay between the riferimento temporale and its token.
	if !isExtract {
		verifyEventTime(rep, files, entry, bp, cp, cpErr, gestore, roots)
	}

	// 8. The receipt (bundles only).
	if isExtract || entry == nil {
		if !isExtract {
			rep.add("receipt: receipt.eml is the original or a reproduction of entry.json", fmt.Errorf("no valid entry.json to check receipt.eml against"), "")
		}
		return rep, nil
	}
	verifyReceipt(rep, files[FileReceipt], files[FileEntry], entry, gestore, opts.Anchors, roots, now, cpTime)
	return rep, nil
}

// addSignature records a signature check and, when it passed, its time.
func (r *Report) addSignature(st SignatureTime, err error, name string) {
	detail := ""
	if err == nil {
		detail = fmt.Sprintf("signed by %s; validated at %s (%s)", st.Signer.Subject, st.At.UTC().Format(time.RFC3339Nano), st.Source)
		if st.Earlier {
			detail += fmt.Sprintf("; by an EARLIER certificate of the gestore, before a renewal (same subject and subjectAltName as %s): serial %x, SHA-256 %x, valid %s to %s",
				FileGestoreCert, st.Signer.SerialNumber, sha256.Sum256(st.Signer.Raw), st.Signer.NotBefore.UTC().Format(time.RFC3339), st.Signer.NotAfter.UTC().Format(time.RFC3339))
		}
		r.Times = append(r.Times, st)
	}
	r.add(name, err, detail)
}

// maxSafeInteger is 2^53-1, the largest integer every JSON reader keeps
// exactly; FORMAT.md refuses larger ones.
const maxSafeInteger = 1<<53 - 1

// decodeEntry is evidence.DecodeEntry, plus the rule of FORMAT.md that
// integers stay below 2^53.
func decodeEntry(raw []byte) (*evidence.Entry, error) {
	e, err := evidence.DecodeEntry(raw)
	if err != nil {
		return nil, err
	}
	if e.Seq > maxSafeInteger {
		return nil, fmt.Errorf("seq %d is 2^53 or more, which FORMAT.md refuses", e.Seq)
	}
	return e, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown members
// and anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON value")
	}
	return nil
}

// exactMembers checks that the JSON object obj has exactly the members
// names, each once, spelled exactly (encoding/json alone matches names
// without regard to case, and keeps the last of duplicates).
func exactMembers(obj []byte, names ...string) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("member %q appears twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	for _, n := range names {
		if !seen[n] {
			return fmt.Errorf("member %q is missing", n)
		}
		delete(seen, n)
	}
	for n := range seen {
		return fmt.Errorf("unknown member %q", n)
	}
	return nil
}

var (
	proofMembers       = []string{"leaf_index", "tree_size", "leaf_hash", "root", "hashes"}
	bundleProofMembers = append(append([]string(nil), proofMembers...), "first_tree_size", "first_root", "consistency", "checkpoint_interval_ms")
)

// parseProof reads proof.json of a bundle: exactly the members of
// ProofDoc.
func parseProof(b []byte) (*ProofDoc, error) {
	var p ProofDoc
	if err := decodeStrict(b, &p); err != nil {
		return nil, fmt.Errorf("proof.json: %w", err)
	}
	if err := exactMembers(b, bundleProofMembers...); err != nil {
		return nil, fmt.Errorf("proof.json: %w", err)
	}
	if p.TreeSize > maxSafeInteger || p.FirstTreeSize > maxSafeInteger {
		return nil, fmt.Errorf("proof.json: tree_size %d or first_tree_size %d is 2^53 or more", p.TreeSize, p.FirstTreeSize)
	}
	if p.IntervalMS <= 0 || p.IntervalMS > maxIntervalMS {
		return nil, fmt.Errorf("proof.json: checkpoint_interval_ms %d is not between 1 and %d (a day)", p.IntervalMS, maxIntervalMS)
	}
	return &p, nil
}

// parseExtract reads extract.json: exactly the members of ExtractDoc.
func parseExtract(b []byte) (*ExtractDoc, error) {
	var x ExtractDoc
	if err := decodeStrict(b, &x); err != nil {
		return nil, fmt.Errorf("extract.json: %w", err)
	}
	if err := exactMembers(b, "mailbox", "from", "to", "produced", "entries"); err != nil {
		return nil, fmt.Errorf("extract.json: %w", err)
	}
	var raw struct{ Entries []json.RawMessage }
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("extract.json: %w", err)
	}
	for i, e := range raw.Entries {
		var parts struct{ Proof json.RawMessage }
		err := exactMembers(e, "entry", "proof")
		if err == nil {
			err = json.Unmarshal(e, &parts)
		}
		if err == nil {
			err = exactMembers(parts.Proof, proofMembers...)
		}
		if err != nil {
			return nil, fmt.Errorf("extract.json: entry %d: %w", i, err)
		}
	}
	return &x, nil
}

func verifyProof(raw []byte, e *evidence.Entry, p Proof, cp *verify.Checkpoint, cpErr error) error {
	if cpErr != nil {
		return fmt.Errorf("checkpoint.txt: %w", cpErr)
	}
	leaf := verify.LeafHash(raw)
	if hex.EncodeToString(leaf[:]) != p.LeafHash {
		return fmt.Errorf("leaf hash %x, proof.json says %s", leaf, p.LeafHash)
	}
	if p.LeafIndex != e.Seq {
		return fmt.Errorf("proof for leaf %d, the entry is %d", p.LeafIndex, e.Seq)
	}
	if p.TreeSize != cp.Size || p.Root != hex.EncodeToString(cp.Root[:]) {
		return fmt.Errorf("proof for tree %d with root %s, checkpoint.txt signs %d with root %x", p.TreeSize, p.Root, cp.Size, cp.Root)
	}
	var hashes [][]byte
	for _, h := range p.Hashes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size || h != strings.ToLower(h) {
			return fmt.Errorf("bad hash %q in proof.json", h)
		}
		hashes = append(hashes, b)
	}
	if p.LeafIndex >= p.TreeSize {
		return fmt.Errorf("leaf %d outside a tree of %d", p.LeafIndex, p.TreeSize)
	}
	return proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, p.TreeSize, leaf[:], hashes, cp.Root[:])
}

// namedGestore reads certs/gestore.pem, the gestore's signing
// certificate, and checks its role and the pin.
func namedGestore(pemData []byte, pin *x509.Certificate) (*x509.Certificate, error) {
	if len(pemData) == 0 {
		return nil, fmt.Errorf("%s is missing: the bundle does not name the gestore's certificate", FileGestoreCert)
	}
	block, rest := pem.Decode(pemData)
	if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
		return nil, fmt.Errorf("%s is not a PEM certificate", FileGestoreCert)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s holds more than one certificate", FileGestoreCert)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FileGestoreCert, err)
	}
	if err := CheckGestoreRole(cert); err != nil {
		return nil, fmt.Errorf("%s: %w", FileGestoreCert, err)
	}
	if pin != nil && !bytes.Equal(pin.Raw, cert.Raw) {
		return nil, fmt.Errorf("%s names %s (SHA-256 %x), not the gestore's certificate given to verify (%s, SHA-256 %x)",
			FileGestoreCert, cert.Subject, sha256.Sum256(cert.Raw), pin.Subject, sha256.Sum256(pin.Raw))
	}
	return cert, nil
}

// CheckGestoreRole reports whether cert has the role of a gestore's
// signing certificate (RFC 6109 §5.5, BUNDLE.md "Who signs"): an end
// entity, not a CA; with at least one e-mail address (the gestore's
// service address) as rfc822Name; whose extended key usages, if it lists
// any, include e-mail protection and include neither TLS server
// authentication nor time stamping (nor OCSP signing, code signing or any
// usage); whose key usage, if present, allows digital signatures.
func CheckGestoreRole(cert *x509.Certificate) error {
	name := cert.Subject.String()
	if cert.IsCA {
		return fmt.Errorf("%s is a CA certificate, not a gestore's signing certificate", name)
	}
	eku := map[x509.ExtKeyUsage]bool{}
	for _, u := range cert.ExtKeyUsage {
		eku[u] = true
	}
	switch {
	case eku[x509.ExtKeyUsageServerAuth]:
		return fmt.Errorf("%s is a TLS server certificate (extended key usage serverAuth), not a gestore's signing certificate", name)
	case eku[x509.ExtKeyUsageTimeStamping]:
		return fmt.Errorf("%s is a time-stamping authority's certificate (extended key usage timeStamping), not a gestore's signing certificate", name)
	case eku[x509.ExtKeyUsageAny], eku[x509.ExtKeyUsageOCSPSigning], eku[x509.ExtKeyUsageCodeSigning]:
		return fmt.Errorf("%s has an extended key usage a gestore's signing certificate does not have", name)
	case (len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0) && !eku[x509.ExtKeyUsageEmailProtection]:
		return fmt.Errorf("%s does not allow e-mail protection (its extended key usages leave it out)", name)
	}
	if len(cert.EmailAddresses) == 0 {
		return fmt.Errorf("%s carries no e-mail address (the gestore's service address, rfc822Name): it is not a gestore's signing certificate", name)
	}
	if ku := cert.KeyUsage; ku != 0 && ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("%s does not allow digital signatures (key usage)", name)
	}
	return nil
}

// describeGestore names a gestore's certificate for the report.
func describeGestore(c *x509.Certificate) string {
	return fmt.Sprintf("%s <%s>, serial %x, SHA-256 %x, valid %s to %s", c.Subject, strings.Join(c.EmailAddresses, ", "), c.SerialNumber,
		sha256.Sum256(c.Raw), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
}

// The delay rule (BUNDLE.md §5): the first timestamp that covers an entry
// is at most the checkpoint interval plus EventDelaySlack after its
// riferimento temporale, unless the entry is marked imported; and never
// more than ClockTolerance before it.
const (
	// EventDelaySlack is what the bound adds to the checkpoint interval:
	// time for the checkpoint to be signed and its token to come.
	EventDelaySlack = verify.EventDelaySlack
	// ClockTolerance is how far the TSA's clock and the gestore's may
	// disagree: a first timestamp earlier than the riferimento temporale
	// by more than this dates an event before it happened, and fails.
	ClockTolerance = time.Minute
	// maxIntervalMS bounds checkpoint_interval_ms: one day.
	maxIntervalMS = 24 * 60 * 60 * 1000
)

// verifyEventTime checks the first checkpoint of a bundle: its token and
// signature, that its tree covers the entry and is a prefix of the newest
// checkpoint's (the consistency proof), and the delay between the
// entry's riferimento temporale and its token.
func verifyEventTime(rep *Report, files map[string][]byte, entry *evidence.Entry, p *ProofDoc, cp *verify.Checkpoint, cpErr error, gestore *x509.Certificate, roots *x509.CertPool) {
	const (
		tsrCheck = "first checkpoint timestamp: first-checkpoint.tsr is an RFC 3161 token over SHA-256(first-checkpoint.txt) from a TSA that chains to the trust anchor"
		sigCheck = "first checkpoint signature: first-checkpoint.p7s is the gestore's CMS signature over first-checkpoint.txt, by certs/gestore.pem or an earlier certificate of the same gestore, valid at its timestamp's time"
		conCheck = "consistency: the tree of first-checkpoint.txt covers the entry and is a prefix of the tree of checkpoint.txt (proof.json's consistency proof, RFC 9162 §2.1.4.2)"
		delCheck = "event time: the first timestamp covering the entry (first-checkpoint.tsr) is at most the bound after its riferimento temporale (checkpoint interval + 5 min), and not before it"
	)
	first, err := verify.ParseCheckpointBody(files[FileFirstCheckpoint])
	if err != nil {
		err = fmt.Errorf("first-checkpoint.txt: %w", err)
		rep.add(tsrCheck, err, "")
		rep.add(sigCheck, err, "")
		rep.add(conCheck, err, "")
		rep.add(delCheck, err, "")
		return
	}
	var firstTime time.Time
	digest := sha256.Sum256(files[FileFirstCheckpoint])
	info, err := tsa.Verify(files[FileFirstCheckpointTSR], digest[:], tsa.VerifyOptions{Roots: roots})
	detail := ""
	if err != nil {
		err = fmt.Errorf("first-checkpoint.tsr is not a valid token over SHA-256(first-checkpoint.txt) by a TSA under the anchor: %w", err)
	} else {
		firstTime = info.GenTime
		detail = "time " + info.GenTime.UTC().Format(time.RFC3339Nano) + ", TSA " + info.Certificate.Subject.String()
	}
	rep.add(tsrCheck, err, detail)
	if err != nil {
		rep.add(sigCheck, fmt.Errorf("first-checkpoint.p7s: no valid first-checkpoint.tsr to validate it at"), "")
	} else {
		st, err := verifyCheckpointCMS(FileFirstCheckpointSig, files[FileFirstCheckpoint], files[FileFirstCheckpointSig], gestore, roots, firstTime, "first checkpoint timestamp")
		rep.addSignature(st, err, sigCheck)
	}

	// The first tree covers the entry and grows into the newest.
	err = checkConsistency(p, entry, first, cp, cpErr)
	detail = ""
	if err == nil {
		detail = fmt.Sprintf("entry %d is in the first %d entries; consistency %d → %d", entry.Seq, first.Size, first.Size, cp.Size)
	}
	rep.add(conCheck, err, detail)

	// The delay.
	switch {
	case entry == nil:
		err = fmt.Errorf("no valid entry.json: its riferimento temporale is unknown")
	case p == nil:
		err = fmt.Errorf("no valid proof.json: the checkpoint interval is unknown")
	case firstTime.IsZero():
		err = fmt.Errorf("no valid first-checkpoint.tsr: the first timestamp is unknown")
	}
	if err != nil {
		rep.add(delCheck, err, "")
		return
	}
	interval := time.Duration(p.IntervalMS) * time.Millisecond
	bound := interval + EventDelaySlack
	delay := firstTime.Sub(entry.Time)
	rep.FirstTimestamp, rep.EventDelay, rep.DelayBound, rep.Imported = firstTime, delay, bound, entry.Imported()
	facts := fmt.Sprintf("riferimento temporale %s, first timestamp %s: delay %v; bound %v (checkpoint interval %v, stated in proof.json, + %v)",
		entry.Time.UTC().Format(time.RFC3339Nano), firstTime.UTC().Format(time.RFC3339Nano), delay, bound, interval, EventDelaySlack)
	switch {
	case delay < -ClockTolerance:
		err = fmt.Errorf("the first timestamp covering the entry is %v BEFORE its riferimento temporale, beyond the tolerance of %v: an event cannot be timestamped before it happened (%s)", -delay, ClockTolerance, facts)
	case entry.Imported():
		detail = fmt.Sprintf("IMPORTED entry (marked %q = %q: appended by hand, its riferimento temporale is the importer's claim, not held to the bound): %s",
			evidence.DetailImported, entry.Details[evidence.DetailImported], facts)
	case delay > bound:
		err = fmt.Errorf("delay %v, more than the bound %v, and the entry is not marked imported: the first timestamp covering it came too late after its riferimento temporale (%s)", delay, bound, facts)
	default:
		detail = "within the bound: " + facts
	}
	rep.add(delCheck, err, detail)
}

// checkConsistency checks that the first checkpoint covers the entry and
// that the consistency proof of proof.json leads from its tree to the
// newest checkpoint's.
func checkConsistency(p *ProofDoc, entry *evidence.Entry, first, cp *verify.Checkpoint, cpErr error) error {
	switch {
	case cpErr != nil:
		return fmt.Errorf("checkpoint.txt: %w", cpErr)
	case p == nil:
		return fmt.Errorf("no valid proof.json")
	case entry == nil:
		return fmt.Errorf("no valid entry.json")
	case first.Origin != cp.Origin:
		return fmt.Errorf("first-checkpoint.txt is of the log %q, checkpoint.txt of %q", first.Origin, cp.Origin)
	case p.FirstTreeSize != first.Size || p.FirstRoot != hex.EncodeToString(first.Root[:]):
		return fmt.Errorf("proof.json's consistency proof is from tree %d with root %s, first-checkpoint.txt signs %d with root %x", p.FirstTreeSize, p.FirstRoot, first.Size, first.Root)
	case entry.Seq >= first.Size:
		return fmt.Errorf("first-checkpoint.txt does not cover the entry: it signs the first %d entries, the entry is %d", first.Size, entry.Seq)
	case first.Size > cp.Size:
		return fmt.Errorf("first-checkpoint.txt signs %d entries, more than the newest checkpoint.txt's %d", first.Size, cp.Size)
	}
	hashes, err := decodeHashes(p.Consistency)
	if err != nil {
		return err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, cp.Size, hashes, first.Root[:], cp.Root[:]); err != nil {
		return fmt.Errorf("the consistency proof from %d to %d does not verify: %w", first.Size, cp.Size, err)
	}
	return nil
}

// decodeHashes decodes a proof's hashes: 64 lower-case hex digits each.
func decodeHashes(hs []string) ([][]byte, error) {
	var out [][]byte
	for _, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size || h != strings.ToLower(h) {
			return nil, fmt.Errorf("bad hash %q in proof.json", h)
		}
		out = append(out, b)
	}
	return out, nil
}

// WriteText writes the report for people: a line per check, "OK  " or
// "FAIL" and its name, with its detail indented on the next line.
func (r *Report) WriteText(w io.Writer) error {
	for _, c := range r.Checks {
		mark := "OK  "
		if !c.OK {
			mark = "FAIL"
		}
		detail := ""
		if c.Detail != "" {
			detail = "\n     " + c.Detail
		}
		if _, err := fmt.Fprintf(w, "%s %s%s\n", mark, c.Name, detail); err != nil {
			return err
		}
	}
	return nil
}
