package bundle

import (
	"archive/zip"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestReportWriteText(t *testing.T) {
	r := &Report{Checks: []Check{{Name: "signature", OK: true}, {Name: "proof", Detail: "root differs"}}}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := "OK   signature\nFAIL proof\n     root differs\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// A split note rebuilt from the pieces it lists matches it; a changed
// piece, a missing piece or an edited note fails, naming the file at fault.
func TestSplitNoteJoin(t *testing.T) {
	whole := bytes.Repeat([]byte("0123456789"), 250)
	pieces := SplitPieces(map[string][]byte{FileReceipt: whole}, 1000)
	if len(pieces) != 3 || pieces[0].Name != "receipt.eml.001" || pieces[2].Name != "receipt.eml.003" || len(pieces[2].Data) != 500 {
		t.Fatalf("pieces: %+v", pieces)
	}
	note := SplitNote(pieces, 1+len(pieces))
	files := func() map[string][]byte {
		fs := map[string][]byte{FileSplitNote: bytes.Clone(note)}
		for _, p := range pieces {
			fs[p.Name] = bytes.Clone(p.Data)
		}
		return fs
	}
	fs := files()
	if name, err := joinPieces(fs, 4); err != nil {
		t.Fatalf("genuine pieces: %s: %v", name, err)
	}
	if !bytes.Equal(fs[FileReceipt], whole) || fs["receipt.eml.001"] != nil {
		t.Fatalf("the pieces were not joined into %s", FileReceipt)
	}
	for _, tt := range []struct {
		name     string
		change   func(map[string][]byte)
		parts    int
		at, want string
	}{
		{"changed piece", func(fs map[string][]byte) { fs["receipt.eml.002"][7] ^= 1 }, 4, "receipt.eml.002", "SHA-256 do not match"},
		{"missing last piece", func(fs map[string][]byte) { delete(fs, "receipt.eml.003") }, 3, "receipt.eml.003", "is missing"},
		{"missing middle piece", func(fs map[string][]byte) { delete(fs, "receipt.eml.002") }, 3, "receipt.eml.002", "is missing"},
		{"edited note", func(fs map[string][]byte) {
			fs[FileSplitNote] = bytes.Replace(fs[FileSplitNote], []byte("Poi seguire"), []byte("Poi ignorare"), 1)
		}, 4, FileSplitNote, "has changed"},
		{"wrong part count", func(map[string][]byte) {}, 5, FileSplitNote, "line 1"},
		{"first part only", func(fs map[string][]byte) {
			for _, p := range pieces {
				delete(fs, p.Name)
			}
		}, 1, FileSplitNote, "give every part"},
		{"pieces without the note", func(fs map[string][]byte) { delete(fs, FileSplitNote) }, 3, FileReceipt, "no SPLIT.txt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := files()
			tt.change(fs)
			at, err := joinPieces(fs, tt.parts)
			if err == nil || at != tt.at || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, %v; want %q and an error with %q", at, err, tt.at, tt.want)
			}
		})
	}
}

// Hostile input gets an error or a failed check, never a panic.
func TestVerifyBadInput(t *testing.T) {
	anchor := selfSigned(t)
	opts := Options{Anchors: []*x509.Certificate{anchor}}
	if _, err := Verify(bytes.NewReader([]byte("not a zip")), 9, opts); err == nil || !strings.Contains(err.Error(), "not a ZIP file") {
		t.Errorf("not a ZIP: %v", err)
	}
	if _, err := VerifyParts(nil, opts); err == nil {
		t.Error("no parts: no error")
	}
	z := zipOf(t, map[string][]byte{FileManifest: []byte("x\n"), FileEntry: []byte("{")})
	if _, err := Verify(bytes.NewReader(z), int64(len(z)), Options{}); err == nil || !strings.Contains(err.Error(), "no trust anchor") {
		t.Errorf("no anchor: %v", err)
	}
	rep, err := Verify(bytes.NewReader(z), int64(len(z)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Checks) < 5 || !strings.Contains(rep.Checks[0].Detail, FileManifest) {
		var b strings.Builder
		rep.WriteText(&b)
		t.Errorf("a bundle of garbage:\n%s", b.String())
	}
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, b := range files {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "anchor"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readZip takes a part whose files are larger once uncompressed than the
// part (a receipt.eml carrying a 30 MiB original), and refuses a part over
// its limit, a file over its limit and files over the total: a bundle is
// hostile input. The limits are scaled down (a MiB is a KiB, the part 4 KiB),
// so that the test allocates little; bundleLimits are BUNDLE.md's.
func TestReadZipLimits(t *testing.T) {
	if bundleLimits != (zipLimits{part: 30_000_000, file: 64 << 20, total: 256 << 20}) {
		t.Fatalf("bundleLimits %+v, not those of BUNDLE.md §2", bundleLimits)
	}
	lim := zipLimits{part: 4 << 10, file: 64 << 10, total: 256 << 10}
	zipOf := func(t *testing.T, sizes map[string]int) []byte {
		t.Helper()
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for name, n := range sizes {
			w, err := zw.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(make([]byte, n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, tt := range []struct {
		name  string
		sizes map[string]int
		size  int64 // given as the part's size, 0: the ZIP's own
		want  string
	}{
		{"a receipt larger than the part, compressed", map[string]int{FileReceipt: 50 << 10}, 0, ""},
		{"a file over the limit", map[string]int{FileReceipt: 64<<10 + 1}, 0, "larger than a bundle can be"},
		{"files over the total together", map[string]int{"a": 60 << 10, "b": 60 << 10, "c": 60 << 10, "d": 60 << 10, "e": 60 << 10}, 0, "more than 262144 bytes"},
		{"a part over the deposit", map[string]int{FileReceipt: 10}, 4<<10 + 1, "larger than a bundle part can be"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			z := zipOf(t, tt.sizes)
			size := tt.size
			if size == 0 {
				size = int64(len(z))
			}
			err := readZip(bytes.NewReader(z), size, map[string][]byte{}, lim)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
