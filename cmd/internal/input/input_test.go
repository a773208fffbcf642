package input

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The limit is exact: an input of the limit is read, one byte more is not.
func TestReaderLimit(t *testing.T) {
	kind := Kind{"thing", 10}
	for _, n := range []int{0, 9, 10} {
		b, err := io.ReadAll(NewReader(t.Context(), bytes.NewReader(make([]byte, n)), "x", kind))
		if err != nil || len(b) != n {
			t.Fatalf("%d bytes: %d, %v", n, len(b), err)
		}
	}
	_, err := io.ReadAll(NewReader(t.Context(), bytes.NewReader(make([]byte, 11)), "x", kind))
	var tl *TooLargeError
	if !errors.As(err, &tl) || err.Error() != "x: thing larger than 10 bytes: refused" {
		t.Fatalf("11 bytes: %v", err)
	}
}

func TestOpenSized(t *testing.T) {
	kind := Kind{"part", 4}
	dir := t.TempDir()
	for _, tt := range []struct {
		name, data string
		stdin      string
		ok         bool
	}{
		{"small", "abcd", "", true},
		{"big", "abcde", "", false},
		{"-", "", "abc", true},
		{"-", "", "abcde", false},
	} {
		path := tt.name
		if path != "-" {
			path = filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, closer, err := OpenSized(t.Context(), strings.NewReader(tt.stdin), path, kind)
		if !tt.ok {
			var tl *TooLargeError
			if !errors.As(err, &tl) {
				t.Errorf("%s: %v, want *TooLargeError", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := tt.data + tt.stdin
		got := make([]byte, s.Size)
		if _, err := s.ReadAt(got, 0); err != nil && err != io.EOF || string(got) != want {
			t.Errorf("%s: read %q, %v; want %q", tt.name, got, err, want)
		}
		closer()
	}
}

func TestByteCount(t *testing.T) {
	for n, want := range map[int64]string{1 << 30: "1 GiB", 3 << 20: "3 MiB", 4096: "4096 bytes"} {
		if got := ByteCount(n); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
