package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// MaxBundleSize is the limit of a bundle for the processo civile
// telematico: 30 MB.
const MaxBundleSize = 30 << 20

// Files of an evidence bundle (BUNDLE.md).
const (
	FileReceipt       = "receipt.eml"
	FileEntry         = "entry.json"
	FileProof         = "proof.json"
	FileCheckpoint    = "checkpoint.txt"
	FileCheckpointSig = "checkpoint.p7s"
	FileCheckpointTSR = "checkpoint.tsr"
	FileGestoreCert   = "certs/gestore.pem"
	FileGestoreCA     = "certs/gestore-ca.pem"
	FileTSACA         = "certs/tsa-ca.pem"
	FileAttestation   = "attestation.txt"
	FileAttestPDF     = "attestation.pdf"
	FileHowTo         = "VERIFY.txt"
	FileManifest      = "manifest.sha256"
	FileManifestSig   = "manifest.p7s"
)

// Proof is proof.json: the entry's inclusion proof to the checkpoint.
type Proof struct {
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	LeafHash  string   `json:"leaf_hash"` // hex SHA-256(0x00 || entry.json)
	Root      string   `json:"root"`      // hex, equal to the checkpoint's
	Hashes    []string `json:"hashes"`    // hex, RFC 6962 audit path, leaf to root
}

// BundleOptions says what goes in a bundle and who signs it.
type BundleOptions struct {
	Ledger *ledger.Ledger
	// Store is the archive holding the archivio di sicurezza; nil means
	// the original is never available and the receipt is reproduced.
	Store archive.Store
	// Seq is the ledger entry of the receipt.
	Seq uint64
	// Signer signs the manifest and any reproduction: the gestore.
	Signer *smime.Signer
	// Stamper time-stamps the signature values of the manifest and of any
	// reproduction (CAdES-T, tsa.StampSignature) at export. nil leaves
	// them without a signature time-stamp.
	Stamper tsa.Stamper
	// GestoreCA and TSACA are the trust anchors (PEM) to include.
	GestoreCA, TSACA []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Bundle is an evidence bundle being built.
type Bundle struct {
	// Reproduction reports that the receipt is rebuilt from the log, the
	// original not being in the archivio di sicurezza.
	Reproduction bool
	// Entry is the ledger entry the bundle proves.
	Entry *ledger.Entry
	// Checkpoint is the checkpoint the proof leads to.
	Checkpoint *ledger.Checkpoint
	files      map[string][]byte
	// signer signed the manifest; WriteParts signs it again when it adds
	// SPLIT.txt.
	signer *smime.Signer
}

// Errors of Build.
var (
	ErrNoCheckpoint = errors.New("no timestamped checkpoint covers the entry yet")
	ErrTooLarge     = errors.New("bundle larger than 30 MB")
)

// Build makes the evidence bundle of a ledger entry: the receipt (the
// original, byte-identical, from the archivio di sicurezza when it is
// there; otherwise a reproduction from the log, signed now and marked as
// such), the entry's canonical bytes, its inclusion proof to the newest
// timestamped checkpoint, that checkpoint with its signature and token,
// the trust anchors, a human-readable attestation, the openssl and
// sha256sum commands that check it by hand, and a manifest of SHA-256
// digests signed by the gestore.
func Build(ctx context.Context, opts BundleOptions) (*Bundle, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	signer := cadesSigner(ctx, opts.Signer, opts.Stamper)
	entry, raw, err := opts.Ledger.Entry(ctx, opts.Seq)
	if err != nil {
		return nil, fmt.Errorf("export: entry %d: %w", opts.Seq, err)
	}
	cp, err := coveringCheckpoint(ctx, opts.Ledger, opts.Seq)
	if err != nil {
		return nil, err
	}
	hashes, err := opts.Ledger.InclusionProof(ctx, opts.Seq, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("export: proof of %d in %d: %w", opts.Seq, cp.Size, err)
	}
	leaf := ledger.LeafHash(raw)
	p := Proof{LeafIndex: opts.Seq, TreeSize: cp.Size, LeafHash: hex.EncodeToString(leaf[:]), Root: hex.EncodeToString(cp.Root[:]), Hashes: []string{}}
	for _, h := range hashes {
		p.Hashes = append(p.Hashes, hex.EncodeToString(h))
	}
	proofJSON, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Entry: entry, Checkpoint: cp, files: map[string][]byte{
		FileEntry:         raw,
		FileProof:         append(proofJSON, '\n'),
		FileCheckpoint:    cp.Body,
		FileCheckpointSig: cp.Signature,
		FileCheckpointTSR: cp.Token,
		FileGestoreCA:     opts.GestoreCA,
		FileTSACA:         opts.TSACA,
	}}
	if opts.Signer != nil {
		b.files[FileGestoreCert] = PEMCertificates(opts.Signer.Certificate.Raw)
	}
	b.files[FileProofScript] = proofScript

	var receipt []byte
	if entry.ArchiveKey != "" && opts.Store != nil {
		obj, err := opts.Store.Get(ctx, entry.ArchiveKey, "")
		switch {
		case err == nil:
			if sum := sha256.Sum256(obj.Data); !bytes.Equal(sum[:], entry.SHA256) {
				return nil, fmt.Errorf("export: archived %s does not match the ledger's SHA-256", entry.ArchiveKey)
			}
			receipt = obj.Data
		case errors.Is(err, archive.ErrNotFound):
		default:
			return nil, fmt.Errorf("export: archive %s: %w", entry.ArchiveKey, err)
		}
	}
	if receipt == nil {
		b.Reproduction = true
		if receipt, err = reproduce(entry, raw, signer, now()); err != nil {
			return nil, err
		}
	}
	b.files[FileReceipt] = receipt
	att := attestation(b, now())
	b.files[FileAttestation] = []byte(att)
	b.files[FileAttestPDF] = textPDF("Attestazione - evidenza dal log del gestore PEC", att)
	b.files[FileHowTo] = []byte(howTo(b))

	if err := b.sign(ctx, signer); err != nil {
		return nil, err
	}
	return b, nil
}

// sign adds the manifest of every file and the gestore's detached CMS
// signature over it, passed through s.Stamp (the CAdES-T time-stamp) when
// set: the last step of a bundle or an extract.
func (b *Bundle) sign(ctx context.Context, s *smime.Signer) error {
	if s == nil || s.Certificate == nil {
		return errors.New("export: sign the manifest: no signer")
	}
	b.signer = s
	return signManifest(ctx, b.files, s)
}

// signManifest adds to files the manifest of every other file and the
// gestore's detached CMS signature over it.
func signManifest(ctx context.Context, files map[string][]byte, s *smime.Signer) error {
	manifest := manifestOf(files)
	sig, err := (&ledger.CMSSigner{Certificate: s.Certificate, Key: s.Key, Chain: s.Chain}).SignDetached(ctx, manifest)
	if err != nil {
		return fmt.Errorf("export: sign the manifest: %w", err)
	}
	if s.Stamp != nil {
		if sig, err = s.Stamp(sig); err != nil {
			return fmt.Errorf("export: time-stamp the manifest's signature: %w", err)
		}
	}
	files[FileManifest] = manifest
	files[FileManifestSig] = sig
	return nil
}

// coveringCheckpoint returns the newest timestamped checkpoint that covers
// entry seq.
func coveringCheckpoint(ctx context.Context, l *ledger.Ledger, seq uint64) (*ledger.Checkpoint, error) {
	cps, err := l.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: checkpoints: %w", err)
	}
	for i := len(cps) - 1; i >= 0; i-- {
		if cps[i].Size > seq && !cps[i].Pending() {
			return cps[i], nil
		}
	}
	return nil, fmt.Errorf("export: entry %d: %w", seq, ErrNoCheckpoint)
}

// manifestOf lists every file but the manifest and its signature, in
// sha256sum's format, sorted by name.
func manifestOf(files map[string][]byte) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		if n != FileManifest && n != FileManifestSig {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var m bytes.Buffer
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&m, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	return m.Bytes()
}

// WriteZip writes the bundle as one ZIP file, refusing more than
// MaxBundleSize bytes (WriteParts splits a larger one).
func (b *Bundle) WriteZip(w io.Writer) error {
	z, err := zipFiles(b.files, b.Checkpoint.Time, nil)
	if err != nil {
		return err
	}
	if len(z) > MaxBundleSize {
		return fmt.Errorf("export: %d bytes: %w; write it in parts", len(z), ErrTooLarge)
	}
	_, err = w.Write(z)
	return err
}

// File returns one file of the bundle.
func (b *Bundle) File(name string) []byte { return b.files[name] }

// reproduce rebuilds a receipt from its ledger entry: a new message,
// signed now by the gestore, that says it is a reproduction from the log,
// gives the RFC 6109 §2.3 fields and carries the entry's canonical bytes.
func reproduce(e *ledger.Entry, raw []byte, s *smime.Signer, now time.Time) ([]byte, error) {
	if s == nil {
		return nil, errors.New("export: the original is not archived and there is no signer for a reproduction")
	}
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		rome = time.UTC
	}
	var text strings.Builder
	fmt.Fprintf(&text, "RIPRODUZIONE DAL LOG DEL GESTORE\r\n\r\n")
	fmt.Fprintf(&text, "Il messaggio originale (%s) non e' conservato nell'archivio di sicurezza.\r\n", e.Kind)
	fmt.Fprintf(&text, "Questa e' una riproduzione dai dati del log, che ha lo stesso valore giuridico\r\n(art. 11, DPR 68/2005), firmata dal gestore il %s.\r\n\r\n", now.In(rome).Format("02/01/2006 15:04:05 MST"))
	for _, f := range entryFields(e, rome) {
		fmt.Fprintf(&text, "%s: %s\r\n", f[0], f[1])
	}
	fmt.Fprintf(&text, "\r\nLa voce del log, nei suoi byte canonici, e' allegata (entry.json).\r\n")
	fmt.Fprintf(&text, "\r\nDati della voce per la verifica:\r\n%s\r\n", strings.Join(ReproductionFacts(e), "\r\n"))

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=us-ascii"}, "Content-Transfer-Encoding": {"7bit"}})
	if err != nil {
		return nil, err
	}
	part.Write([]byte(asciiOnly(text.String())))
	part, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/json; name=entry.json"},
		"Content-Disposition":       {"attachment; filename=entry.json"},
		"Content-Transfer-Encoding": {"base64"},
	})
	if err != nil {
		return nil, err
	}
	writeBase64Lines(part, raw)
	mw.Close()
	entity := []byte("Content-Type: multipart/mixed; boundary=\"" + mw.Boundary() + "\"\r\n\r\n")
	entity = append(entity, body.Bytes()...)
	from := "posta-certificata@unknown"
	if addrs := smime.CertificateAddresses(s.Certificate); len(addrs) > 0 {
		from = addrs[0]
	}
	msg, err := smime.SignMessage([]smime.Field{
		{Name: "From", Value: from},
		{Name: "To", Value: asciiOnly(e.Mittente)},
		{Name: "Subject", Value: "RIPRODUZIONE DAL LOG: " + asciiOnly(string(e.Kind)) + " " + asciiOnly(e.Identificativo)},
		{Name: "Date", Value: now.Format(time.RFC1123Z)},
		{Name: "X-Riproduzione", Value: "log seq " + fmt.Sprint(e.Seq)},
	}, entity, s)
	if err != nil {
		return nil, fmt.Errorf("export: sign the reproduction: %w", err)
	}
	return msg, nil
}

func entryFields(e *ledger.Entry, rome *time.Location) [][2]string {
	var dest []string
	for _, d := range e.Destinatari {
		dest = append(dest, d.Address+" ("+string(d.Tipo)+")")
	}
	out := [][2]string{
		{"Tipo di evento", string(e.Kind)},
		{"Identificativo", e.Identificativo},
		{"Message-ID del client", e.ClientMessageID},
		{"Riferimento temporale", e.Time.In(rome).Format("02/01/2006 15:04:05 MST") + " (" + e.Time.UTC().Format(time.RFC3339Nano) + ")"},
		{"Mittente", e.Mittente},
		{"Destinatari", strings.Join(dest, ", ")},
		{"Oggetto", e.Oggetto},
		{"Gestore", e.Gestore},
		{"Messaggi collegati", strings.Join(e.Related, ", ")},
		{"SHA-256 del messaggio firmato", hex.EncodeToString(e.SHA256)},
		{"Numero nel log", fmt.Sprint(e.Seq)},
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, [2]string{k, e.Details[k]})
	}
	return out
}

// asciiOnly replaces what is not printable ASCII, for header fields and
// the 7-bit text of a reproduction.
func asciiOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\t' || (r >= 0x20 && r < 0x7f):
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

func writeBase64Lines(w io.Writer, data []byte) {
	const line = 76
	enc := make([]byte, (len(data)+2)/3*4)
	base64.StdEncoding.Encode(enc, data)
	for len(enc) > line {
		w.Write(enc[:line])
		w.Write([]byte("\r\n"))
		enc = enc[line:]
	}
	w.Write(enc)
	w.Write([]byte("\r\n"))
}

func attestation(b *Bundle, now time.Time) string {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		rome = time.UTC
	}
	var s strings.Builder
	fmt.Fprintf(&s, "ATTESTAZIONE\n\n")
	fmt.Fprintf(&s, "Il gestore di posta elettronica certificata %s attesta che il proprio log\n", b.Entry.Gestore)
	fmt.Fprintf(&s, "contiene, al numero %d, la voce descritta qui sotto, e che la voce e'\n", b.Entry.Seq)
	fmt.Fprintf(&s, "inclusa nell'albero di Merkle del log di %d voci, la cui radice e' firmata\n", b.Checkpoint.Size)
	fmt.Fprintf(&s, "dal gestore e marcata temporalmente (RFC 3161) il %s.\n\n", b.Checkpoint.Time.In(rome).Format("02/01/2006 15:04:05 MST"))
	if b.Reproduction {
		fmt.Fprintf(&s, "La ricevuta (receipt.eml) e' una RIPRODUZIONE dal log: l'originale non e'\nconservato nell'archivio di sicurezza.\n\n")
	} else {
		fmt.Fprintf(&s, "La ricevuta (receipt.eml) e' l'ORIGINALE firmato, byte per byte, dall'archivio\ndi sicurezza: il suo SHA-256 e' quello registrato nella voce.\n\n")
	}
	for _, f := range entryFields(b.Entry, rome) {
		if f[1] != "" {
			fmt.Fprintf(&s, "%s: %s\n", f[0], f[1])
		}
	}
	fmt.Fprintf(&s, "\nRadice dell'albero: %s\n", hex.EncodeToString(b.Checkpoint.Root[:]))
	fmt.Fprintf(&s, "Pacchetto prodotto il %s.\n", now.In(rome).Format("02/01/2006 15:04:05 MST"))
	fmt.Fprintf(&s, "\nOgni file e' elencato con il suo SHA-256 in manifest.sha256, firmato dal\ngestore (manifest.p7s). VERIFY.txt spiega come controllare tutto a mano.\n")
	return s.String()
}

// PEMCertificates returns PEM text of DER certificates.
func PEMCertificates(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}
