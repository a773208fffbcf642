package export

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
)

func TestBundleWriteFilesOnePart(t *testing.T) {
	t.Parallel()
	b := &Bundle{Checkpoint: &ledger.Checkpoint{Time: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)},
		files: map[string][]byte{FileEntry: []byte(`{"seq":1}`)}}
	out := filepath.Join(t.TempDir(), "b.zip")
	names, err := b.WriteFiles(out)
	if err != nil || len(names) != 1 || names[0] != out {
		t.Fatalf("%v, %v; want [%s]", names, err, out)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil || len(z.File) != 1 || z.File[0].Name != FileEntry {
		t.Fatalf("zip: %v, %v", z, err)
	}
}

func TestBundleOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		b    Bundle
		want string
	}{
		{Bundle{}, "the original receipt from the archivio di sicurezza"},
		{Bundle{Reproduction: true}, "a reproduction from the log (the original is not archived)"},
		{Bundle{Reproduction: true, ArchiveProblem: "hash"}, "a reproduction from the log (the archived object is not the original: hash)"},
	} {
		if got := tt.b.Origin(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
