package export

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/custode/custode/ledger/verify/bundle"
)

// FileSplitNote is bundle.FileSplitNote: the note the first part of a
// bundle written in parts carries (BUNDLE.md).
const FileSplitNote = bundle.FileSplitNote

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
// VerifyBundleParts (bundle.VerifyParts) checks the parts together.
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
		pieces := bundle.SplitPieces(cut, pieceSize)
		note := bundle.SplitNote(pieces, 1+len(pieces))
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
				z, err := zipFiles(map[string][]byte{p.Name: p.Data}, b.Checkpoint.Time, map[string]bool{p.Name: true})
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
