package bundle

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// maxJoinedFile bounds a file joined from pieces: a ricevuta completa
// carries the original message, itself at most 30 MB per recipient.
const maxJoinedFile = 256 << 20

// pieceName matches the name of a piece of a file cut by SplitPieces.
var pieceName = regexp.MustCompile(`^(.+)\.([0-9]{3})$`)

// notedPiece matches a piece's line in a split note.
var notedPiece = regexp.MustCompile(`(?m)^  [0-9a-f]{64}  (\S+)  \(`)

// Piece is one piece of a file of a bundle written in parts: Name is
// the piece's file name (<file>.001, <file>.002, …), File the name of the
// file it was cut from, Data its bytes.
type Piece struct {
	Name, File string
	Data       []byte
}

// SplitPieces cuts each file of files into pieces of at most size bytes,
// in name order: at least one piece per file, numbered from 001.
func SplitPieces(files map[string][]byte, size int) []Piece {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []Piece
	for _, n := range names {
		data := files[n]
		for i := 0; i*size < len(data) || i == 0; i++ {
			out = append(out, Piece{Name: fmt.Sprintf("%s.%03d", n, i+1), File: n, Data: data[i*size : min(len(data), (i+1)*size)]})
		}
	}
	return out
}

// SplitNote is the text of SPLIT.txt for pieces in parts parts. It
// depends on nothing else, so that a verifier rebuilds it from the pieces
// and compares.
func SplitNote(pieces []Piece, parts int) []byte {
	var s strings.Builder
	fmt.Fprintf(&s, "Questo pacchetto di evidenze è diviso in %d parti (file ZIP), ciascuna entro il limite del deposito\n", parts)
	s.WriteString("nel processo civile telematico. La prima parte contiene questo avviso, il manifesto\n")
	s.WriteString("firmato e tutti i file tranne quelli divisi qui sotto; ogni altra parte contiene un pezzo.\n")
	s.WriteString("This evidence bundle is split in parts; the files below are cut into pieces, one per further part.\n")
	var files []string
	byFile := map[string][]Piece{}
	for _, p := range pieces {
		if _, ok := byFile[p.File]; !ok {
			files = append(files, p.File)
		}
		byFile[p.File] = append(byFile[p.File], p)
	}
	for _, f := range files {
		ps := byFile[f]
		total := 0
		for _, p := range ps {
			total += len(p.Data)
		}
		fmt.Fprintf(&s, "\n%s (%d byte) è diviso in %d pezzi:\n", f, total, len(ps))
		joined := make([]string, len(ps))
		for i, p := range ps {
			sum := sha256.Sum256(p.Data)
			fmt.Fprintf(&s, "  %x  %s  (%d byte)\n", sum, p.Name, len(p.Data))
			joined[i] = p.Name
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
	byFile := map[string][]Piece{}
	for n, data := range files {
		m := pieceName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if _, whole := files[m[1]]; whole {
			continue // a file whose own name ends in .NNN
		}
		byFile[m[1]] = append(byFile[m[1]], Piece{Name: n, File: m[1], Data: data})
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
	var pieces []Piece
	files2 := make([]string, 0, len(byFile))
	for f := range byFile {
		files2 = append(files2, f)
	}
	slices.Sort(files2)
	for _, f := range files2 {
		ps := byFile[f]
		slices.SortFunc(ps, func(x, y Piece) int { return strings.Compare(x.Name, y.Name) })
		var joined []byte
		for i, p := range ps {
			if want := fmt.Sprintf("%s.%03d", f, i+1); p.Name != want {
				return want, fmt.Errorf("%s is missing: give every part of the bundle", want)
			}
			if len(joined)+len(p.Data) > maxJoinedFile {
				return f, fmt.Errorf("%s joined is larger than a bundle's file can be", f)
			}
			joined = append(joined, p.Data...)
		}
		pieces = append(pieces, ps...)
		files[f] = joined
		for _, p := range ps {
			delete(files, p.Name)
		}
	}
	// SPLIT.txt stays: the manifest lists it.
	// A piece the note lists but no part holds: a part left behind.
	given := map[string]bool{}
	for _, p := range pieces {
		given[p.Name] = true
	}
	for _, m := range notedPiece.FindAllStringSubmatch(string(note), -1) {
		if !given[m[1]] {
			return m[1], fmt.Errorf("%s, which %s lists, is missing: give every part of the bundle", m[1], FileSplitNote)
		}
	}
	want := SplitNote(pieces, parts)
	if !bytes.Equal(note, want) {
		// Name the piece whose line differs, if one does.
		gotLines, wantLines := strings.Split(string(note), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				for _, p := range pieces {
					if strings.Contains(wantLines[i], "  "+p.Name+"  ") {
						return p.Name, fmt.Errorf("%s has changed, or %s has: their SHA-256 do not match", p.Name, FileSplitNote)
					}
				}
				return FileSplitNote, fmt.Errorf("%s has changed: line %d is %q, the pieces given make it %q", FileSplitNote, i+1, gotLines[i], wantLines[i])
			}
		}
		return FileSplitNote, fmt.Errorf("%s does not match the %d parts and the pieces given", FileSplitNote, parts)
	}
	return "", nil
}
