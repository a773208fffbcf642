package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/verify/bundle"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// MaxBundleSize is bundle.MaxSize: the most a bundle, or one part of it,
// takes as written, 29,000,000 bytes, leaving 1,000,000 bytes of room
// under the 30 MB (30,000,000 bytes) of a deposit in the processo civile
// telematico.
const MaxBundleSize = bundle.MaxSize

// Files of an evidence bundle (BUNDLE.md): see package bundle.
const (
	FileReceipt            = bundle.FileReceipt
	FileEntry              = bundle.FileEntry
	FileProof              = bundle.FileProof
	FileCheckpoint         = bundle.FileCheckpoint
	FileCheckpointSig      = bundle.FileCheckpointSig
	FileCheckpointTSR      = bundle.FileCheckpointTSR
	FileFirstCheckpoint    = bundle.FileFirstCheckpoint
	FileFirstCheckpointSig = bundle.FileFirstCheckpointSig
	FileFirstCheckpointTSR = bundle.FileFirstCheckpointTSR
	FileGestoreCert        = bundle.FileGestoreCert
	FileGestoreCA          = bundle.FileGestoreCA
	FileTSACA              = bundle.FileTSACA
	FileAttestation        = bundle.FileAttestation
	FileAttestPDF          = bundle.FileAttestPDF
	FileHowTo              = bundle.FileHowTo
	FileManifest           = bundle.FileManifest
	FileManifestSig        = bundle.FileManifestSig
)

type (
	// Proof is bundle.Proof: an entry's inclusion proof to a checkpoint.
	Proof = bundle.Proof
	// BundleProof is bundle.ProofDoc: proof.json of a bundle.
	BundleProof = bundle.ProofDoc
)

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
	// ArchiveProblem, when not empty, says why the object the entry's
	// archive key names was not used as the original (its SHA-256 is not
	// the entry's): the receipt is then a reproduction, and the
	// attestation and the reproduction say so.
	ArchiveProblem string
	// Entry is the ledger entry the bundle proves.
	Entry *ledger.Entry
	// Checkpoint is the checkpoint the proof leads to: the newest
	// timestamped one.
	Checkpoint *ledger.Checkpoint
	// First is the earliest timestamped checkpoint that covers the entry:
	// its token dates the event.
	First *ledger.Checkpoint
	files map[string][]byte
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
// the earliest timestamped checkpoint that covers the entry (whose token
// dates the event) with its signature, token and consistency proof to
// the newest, the ledger's checkpoint interval (the delay bound's),
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
	first, err := opts.Ledger.FirstTimestampedCheckpoint(ctx, opts.Seq)
	if err != nil {
		return nil, fmt.Errorf("export: first checkpoint of %d: %w", opts.Seq, err)
	}
	if first.Size > cp.Size {
		// A checkpoint was stamped between the two reads: prove to it.
		cp = first
	}
	hashes, err := opts.Ledger.InclusionProof(ctx, opts.Seq, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("export: proof of %d in %d: %w", opts.Seq, cp.Size, err)
	}
	cons, err := opts.Ledger.ConsistencyProof(ctx, first.Size, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("export: consistency of %d with %d: %w", first.Size, cp.Size, err)
	}
	leaf := ledger.LeafHash(raw)
	p := BundleProof{
		Proof:         Proof{LeafIndex: opts.Seq, TreeSize: cp.Size, LeafHash: hex.EncodeToString(leaf[:]), Root: hex.EncodeToString(cp.Root[:]), Hashes: hexList(hashes)},
		FirstTreeSize: first.Size, FirstRoot: hex.EncodeToString(first.Root[:]), Consistency: hexList(cons),
		// Rounded up, so that the bound is never tighter than the ledger's.
		IntervalMS: int64((opts.Ledger.CheckpointInterval() + time.Millisecond - 1) / time.Millisecond),
	}
	proofJSON, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Entry: entry, Checkpoint: cp, First: first, files: map[string][]byte{
		FileEntry:              raw,
		FileProof:              append(proofJSON, '\n'),
		FileCheckpoint:         cp.Body,
		FileCheckpointSig:      cp.Signature,
		FileCheckpointTSR:      cp.Token,
		FileFirstCheckpoint:    first.Body,
		FileFirstCheckpointSig: first.Signature,
		FileFirstCheckpointTSR: first.Token,
		FileGestoreCA:          opts.GestoreCA,
		FileTSACA:              opts.TSACA,
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
				// Not the original (entries of earlier versions gave a
				// consegna the busta's key): reproduce, and say so.
				b.ArchiveProblem = fmt.Sprintf("l'oggetto %s dell'archivio di sicurezza ha SHA-256 %x, non quello registrato nella voce (%x): non è l'originale di questa voce", entry.ArchiveKey, sum, entry.SHA256)
				break
			}
			receipt = obj.Data
		case errors.Is(err, archive.ErrNotFound):
		default:
			return nil, fmt.Errorf("export: archive %s: %w", entry.ArchiveKey, err)
		}
	}
	if receipt == nil {
		b.Reproduction = true
		if receipt, err = reproduce(entry, raw, signer, now(), b.ArchiveProblem); err != nil {
			return nil, err
		}
	}
	b.files[FileReceipt] = receipt
	att := attestation(b, gestoreName(signerCertificate(opts.Signer)), now())
	b.files[FileAttestation] = []byte(att.Text())
	if b.files[FileAttestPDF], err = att.PDF(now()); err != nil {
		return nil, err
	}
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
	cp, err := l.NewestTimestampedCheckpoint(ctx)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, fmt.Errorf("export: entry %d: %w", seq, ErrNoCheckpoint)
	case err != nil:
		return nil, fmt.Errorf("export: checkpoints: %w", err)
	case cp.Size <= seq:
		return nil, fmt.Errorf("export: entry %d: %w", seq, ErrNoCheckpoint)
	}
	return cp, nil
}

// hexList is hashes in lower-case hex, never nil.
func hexList(hashes [][]byte) []string {
	out := []string{}
	for _, h := range hashes {
		out = append(out, hex.EncodeToString(h))
	}
	return out
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
// problem, if not empty, says why the archived object is not the original.
func reproduce(e *ledger.Entry, raw []byte, s *smime.Signer, now time.Time, problem string) ([]byte, error) {
	if s == nil {
		return nil, errors.New("export: the original is not archived and there is no signer for a reproduction")
	}
	text := strings.ReplaceAll(reproductionText(e, gestoreName(s.Certificate), now, problem)+
		"\nDati della voce per la verifica:\n"+strings.Join(ReproductionFacts(e), "\n")+"\n", "\n", "\r\n")

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
	if err != nil {
		return nil, err
	}
	qp := quotedprintable.NewWriter(part)
	qp.Write([]byte(text))
	qp.Close()
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
		{Name: "Subject", Value: mime.QEncoding.Encode("utf-8", strings.Join(strings.Fields("RIPRODUZIONE DAL LOG: "+KindName(e.Kind, e.Details)+" "+e.Identificativo), " "))},
		{Name: "Date", Value: now.Format(time.RFC1123Z)},
		{Name: "X-Riproduzione", Value: "log seq " + fmt.Sprint(e.Seq)},
	}, entity, s)
	if err != nil {
		return nil, fmt.Errorf("export: sign the reproduction: %w", err)
	}
	return msg, nil
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

// attestation is the attestation of a bundle, which attestation.txt and
// attestation.pdf give: keeper, the gestore that keeps the log and signs
// the bundle, attests; the entry's gestore is named as the issuer of the
// original.
func attestation(b *Bundle, keeper string, now time.Time) *document {
	e := b.Entry
	kind := KindName(e.Kind, e.Details)
	var intro strings.Builder
	fmt.Fprintf(&intro, "Il gestore di posta elettronica certificata %s, che tiene il log, attesta che il proprio log contiene, al numero %d, la voce descritta qui sotto, e che la voce è inclusa nell'albero di Merkle del log di %d voci, la cui radice è firmata da %s e marcata temporalmente (RFC 3161) il %s.",
		keeper, e.Seq, b.Checkpoint.Size, keeper, FormatTime(b.Checkpoint.Time))
	if b.First != nil {
		fmt.Fprintf(&intro, " La voce è coperta per la prima volta dal checkpoint di %d voci del %s, firmato e marcato temporalmente: la marca temporale prova che la voce esisteva già a quella data.",
			b.First.Size, FormatTime(b.First.Time))
		if e.Imported() {
			when := e.Details[ledger.DetailImported]
			if t, err := time.Parse(time.RFC3339Nano, when); err == nil {
				when = FormatTime(t)
			}
			fmt.Fprintf(&intro, " La voce è stata IMPORTATA (registrata a mano o da un altro log, il %s): il suo riferimento temporale è quanto dichiarato da chi l'ha importata.", when)
		}
	}
	if e.Gestore != "" && e.Gestore != keeper {
		fmt.Fprintf(&intro, "\nIl messaggio originale (%s) è stato emesso dal gestore %s; %s lo ha ricevuto e registrato nel proprio log.", kind, e.Gestore, keeper)
	}
	var receipt string
	switch {
	case !b.Reproduction:
		receipt = "La ricevuta (receipt.eml) è l'ORIGINALE firmato, byte per byte, conservato nell'archivio di sicurezza: il suo SHA-256 è quello registrato nella voce."
	case b.ArchiveProblem != "":
		receipt = fmt.Sprintf("La ricevuta (receipt.eml) è una RIPRODUZIONE dal log, firmata da %s: %s.", keeper, b.ArchiveProblem)
	default:
		receipt = fmt.Sprintf("La ricevuta (receipt.eml) è una RIPRODUZIONE dal log, firmata da %s: l'originale non è conservato nell'archivio di sicurezza.", keeper)
	}
	proof := [][2]string{
		{"Radice dell'albero", hex.EncodeToString(b.Checkpoint.Root[:])},
		{"Voci nell'albero", fmt.Sprint(b.Checkpoint.Size)},
		{"Marca temporale", FormatTime(b.Checkpoint.Time)},
	}
	if b.First != nil {
		proof = append(proof, [2]string{"Prima marca temporale della voce", fmt.Sprintf("%s (checkpoint di %d voci)", FormatTime(b.First.Time), b.First.Size)})
	}
	proof = append(proof, [2]string{"Pacchetto prodotto il", FormatTime(now)})
	return &document{
		Issuer: keeper,
		Title:  "Attestazione: evidenza dal log del gestore di posta elettronica certificata",
		Blocks: []block{
			{Text: intro.String()},
			{Text: receipt},
			{Heading: "La voce del log", Rows: entryRows(e)},
			{Heading: "Prova", Rows: proof},
			{Text: "Ogni file è elencato con il suo SHA-256 in manifest.sha256, firmato dal gestore (manifest.p7s). VERIFY.txt spiega come controllare tutto a mano."},
		},
	}
}

// reproductionText is the text of a reproduction: keeper, the gestore
// that keeps the log, signs it; the entry's gestore issued the original.
func reproductionText(e *ledger.Entry, keeper string, now time.Time, problem string) string {
	kind := KindName(e.Kind, e.Details)
	var s strings.Builder
	s.WriteString("RIPRODUZIONE DAL LOG DEL GESTORE\n\n")
	issuer := ""
	if e.Gestore != "" && e.Gestore != keeper {
		issuer = ", emesso dal gestore " + e.Gestore
	}
	why := "non è conservato nel suo archivio di sicurezza"
	if problem != "" {
		why = "non è disponibile: " + problem
	}
	para := fmt.Sprintf("Il gestore di posta elettronica certificata %s, che tiene il log, attesta che il messaggio originale (%s%s) %s. Questa è una riproduzione dai dati del log, che ha lo stesso valore giuridico (art. 11, DPR 68/2005), firmata da %s il %s.",
		keeper, kind, issuer, why, keeper, FormatTime(now))
	for _, l := range wrap(para, textWidth) {
		s.WriteString(l + "\n")
	}
	s.WriteString("\n")
	for _, r := range entryRows(e) {
		s.WriteString(r[0] + ": " + r[1] + "\n")
	}
	s.WriteString("\nLa voce del log, nei suoi byte canonici, è allegata (entry.json).\n")
	return s.String()
}

// signerCertificate is s's certificate, or nil.
func signerCertificate(s *smime.Signer) *x509.Certificate {
	if s == nil {
		return nil
	}
	return s.Certificate
}

// PEMCertificates returns PEM text of DER certificates.
func PEMCertificates(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}
