package export

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// FileSplitNote is the note the first part of a bundle written in parts
// carries: which files are cut into pieces, the pieces' digests, and how to
// join them (its exact format is in BUNDLE.md). The manifest of a bundle
// written in parts lists it, beside the whole files, so the gestore's
// signature covers it; a verifier also rebuilds it from the pieces and
// requires it byte for byte.
const FileSplitNote = "SPLIT.txt"

// maxJoinedFile bounds a file joined from pieces: a ricevuta completa
// carries the original message, itself at most 30 MB per recipient.
const maxJoinedFile = 256 << 20

// pieceName matches the name of a piece of a file cut by WriteParts.
var pieceName = regexp.MustCompile(`^(.+)\.([0-9]{3})$`)

// notedPiece matches a piece's line in a split note.
var notedPiece = regexp.MustCompile(`(?m)^  [0-9a-f]{64}  (\S+)  \(`)

// zipFiles writes files as one ZIP, in name order, each with the time
// modified. Files named in stored are not compressed.
func zipFiles(files map[string][]byte, modified time.Time, stored map[string]bool) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		method := zip.Deflate
		if stored[n] {
			method = zip.Store
		}
		f, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: method, Modified: modified})
		if err != nil {
			return nil, fmt.Errorf("export: zip %s: %w", n, err)
		}
		if _, err := f.Write(files[n]); err != nil {
			return nil, fmt.Errorf("export: zip %s: %w", n, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("export: zip: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteParts writes the bundle as ZIP files of at most limit bytes each
// (MaxBundleSize, the limit of a deposit in the processo civile telematico,
// when limit is 0). A bundle that fits is one part, the same bytes WriteZip
// writes. Otherwise the largest files (in practice the receipt, when it
// carries a large original message) are cut into pieces named
// <file>.001, <file>.002, …, one piece per further part, and the first
// part holds everything else and the note SPLIT.txt, which lists the
// pieces with their SHA-256 and gives the command that joins them; the
// manifest is then signed again, with SPLIT.txt in it.
// VerifyBundleParts checks the parts together.
func (b *Bundle) WriteParts(limit int) ([][]byte, error) {
	if limit <= 0 {
		limit = MaxBundleSize
	}
	whole, err := zipFiles(b.files, b.Checkpoint.Time, nil)
	if err != nil {
		return nil, err
	}
	if len(whole) <= limit {
		return [][]byte{whole}, nil
	}
	// The room a piece has in its part: the ZIP's headers and directory
	// take a few hundred bytes.
	const overhead = 1 << 10
	if limit < 4*overhead {
		return nil, fmt.Errorf("export: a part limit of %d bytes is too small", limit)
	}
	pieceSize := limit - overhead
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	slices.SortFunc(names, func(x, y string) int { return len(b.files[y]) - len(b.files[x]) })
	first := map[string][]byte{}
	for n, data := range b.files {
		first[n] = data
	}
	if b.signer == nil {
		return nil, errors.New("export: a bundle written in parts is signed again with its split note: no signer")
	}
	cut := map[string][]byte{}
	var firstZip []byte
	for _, n := range names {
		if n == FileManifest || n == FileManifestSig {
			continue
		}
		delete(first, n)
		cut[n] = b.files[n]
		pieces := splitPieces(cut, pieceSize)
		note := splitNote(pieces, 1+len(pieces))
		// The manifest lists the whole files and the note.
		signed := maps.Clone(b.files)
		signed[FileSplitNote] = note
		if err := signManifest(context.Background(), signed, b.signer); err != nil {
			return nil, err
		}
		first[FileSplitNote] = note
		first[FileManifest], first[FileManifestSig] = signed[FileManifest], signed[FileManifestSig]
		if firstZip, err = zipFiles(first, b.Checkpoint.Time, nil); err != nil {
			return nil, err
		}
		if len(firstZip) <= limit {
			parts := [][]byte{firstZip}
			for _, p := range pieces {
				z, err := zipFiles(map[string][]byte{p.name: p.data}, b.Checkpoint.Time, map[string]bool{p.name: true})
				if err != nil {
					return nil, err
				}
				parts = append(parts, z)
			}
			return parts, nil
		}
	}
	return nil, fmt.Errorf("export: %d bytes cannot be split in parts of %d: %w", len(whole), limit, ErrTooLarge)
}

// piece is one piece of a file cut by WriteParts.
type piece struct {
	name, file string
	data       []byte
}

// splitPieces cuts each file of files into pieces of at most size bytes,
// in name order.
func splitPieces(files map[string][]byte, size int) []piece {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []piece
	for _, n := range names {
		data := files[n]
		for i := 0; i*size < len(data) || i == 0; i++ {
			out = append(out, piece{name: fmt.Sprintf("%s.%03d", n, i+1), file: n, data: data[i*size : min(len(data), (i+1)*size)]})
		}
	}
	return out
}

// splitNote is the text of SPLIT.txt for pieces in parts parts. It depends
// on nothing else, so that a verifier can rebuild it from the pieces and
// compare.
func splitNote(pieces []piece, parts int) []byte {
	var s strings.Builder
	fmt.Fprintf(&s, "Questo pacchetto di evidenze è diviso in %d parti (file ZIP), ciascuna entro il limite del deposito\n", parts)
	s.WriteString("nel processo civile telematico. La prima parte contiene questo avviso, il manifesto\n")
	s.WriteString("firmato e tutti i file tranne quelli divisi qui sotto; ogni altra parte contiene un pezzo.\n")
	s.WriteString("This evidence bundle is split in parts; the files below are cut into pieces, one per further part.\n")
	var files []string
	byFile := map[string][]piece{}
	for _, p := range pieces {
		if _, ok := byFile[p.file]; !ok {
			files = append(files, p.file)
		}
		byFile[p.file] = append(byFile[p.file], p)
	}
	for _, f := range files {
		ps := byFile[f]
		total := 0
		for _, p := range ps {
			total += len(p.data)
		}
		fmt.Fprintf(&s, "\n%s (%d byte) è diviso in %d pezzi:\n", f, total, len(ps))
		joined := make([]string, len(ps))
		for i, p := range ps {
			sum := sha256.Sum256(p.data)
			fmt.Fprintf(&s, "  %x  %s  (%d byte)\n", sum, p.name, len(p.data))
			joined[i] = p.name
		}
		fmt.Fprintf(&s, "Per ricomporlo, estratte tutte le parti nella stessa cartella:\n  cat %s > %s\n", strings.Join(joined, " "), f)
	}
	s.WriteString("\nPoi seguire VERIFY.txt. Oppure, con tutte le parti: custode verify -anchor CA.pem PARTE1.zip PARTE2.zip ...\n")
	return []byte(s.String())
}

// joinPieces takes the pieces out of files, joins them into the files they
// were cut from, and checks the split note against them. It returns the
// name of the file at fault with the error.
func joinPieces(files map[string][]byte, parts int) (string, error) {
	note, hasNote := files[FileSplitNote]
	byFile := map[string][]piece{}
	for n, data := range files {
		m := pieceName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if _, whole := files[m[1]]; whole {
			continue // a file whose own name ends in .NNN
		}
		byFile[m[1]] = append(byFile[m[1]], piece{name: n, file: m[1], data: data})
	}
	if !hasNote {
		if len(byFile) > 0 {
			for f := range byFile {
				return f, fmt.Errorf("pieces of %s but no %s: give every part of the bundle", f, FileSplitNote)
			}
		}
		return "", nil
	}
	if parts < 2 {
		return FileSplitNote, fmt.Errorf("the bundle is split in parts: give every part of it, the first one included")
	}
	var pieces []piece
	files2 := make([]string, 0, len(byFile))
	for f := range byFile {
		files2 = append(files2, f)
	}
	slices.Sort(files2)
	for _, f := range files2 {
		ps := byFile[f]
		slices.SortFunc(ps, func(x, y piece) int { return strings.Compare(x.name, y.name) })
		var joined []byte
		for i, p := range ps {
			if want := fmt.Sprintf("%s.%03d", f, i+1); p.name != want {
				return want, fmt.Errorf("%s is missing: give every part of the bundle", want)
			}
			if len(joined)+len(p.data) > maxJoinedFile {
				return f, fmt.Errorf("%s joined is larger than a bundle's file can be", f)
			}
			joined = append(joined, p.data...)
		}
		pieces = append(pieces, ps...)
		files[f] = joined
		for _, p := range ps {
			delete(files, p.name)
		}
	}
	// SPLIT.txt stays: the manifest lists it.
	// A piece the note lists but no part holds: a part left behind.
	given := map[string]bool{}
	for _, p := range pieces {
		given[p.name] = true
	}
	for _, m := range notedPiece.FindAllStringSubmatch(string(note), -1) {
		if !given[m[1]] {
			return m[1], fmt.Errorf("%s, which %s lists, is missing: give every part of the bundle", m[1], FileSplitNote)
		}
	}
	want := splitNote(pieces, parts)
	if !bytes.Equal(note, want) {
		// Name the piece whose line differs, if one does.
		gotLines, wantLines := strings.Split(string(note), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				for _, p := range pieces {
					if strings.Contains(wantLines[i], "  "+p.name+"  ") {
						return p.name, fmt.Errorf("%s has changed, or %s has: their SHA-256 do not match", p.name, FileSplitNote)
					}
				}
				return FileSplitNote, fmt.Errorf("%s has changed: line %d is %q, the pieces given make it %q", FileSplitNote, i+1, gotLines[i], wantLines[i])
			}
		}
		return FileSplitNote, fmt.Errorf("%s does not match the %d parts and the pieces given", FileSplitNote, parts)
	}
	return "", nil
}
