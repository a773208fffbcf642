package daticert

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// marshals, parses back to the same model, and marshals to the same bytes.
// The seed corpus in testdata/fuzz/FuzzParse holds valid, tolerated and
// hostile documents (regenerate it with go test -update).
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	golden, err := filepath.Glob(filepath.Join("testdata", "golden", "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range golden {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("Parse accepted a model Marshal refuses: %v\n%+v", err, d)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(d)): %v\n%s", err, out)
		}
		if !equalModel(d, back) {
			t.Fatalf("round trip changed the model\nfirst:  %+v\nsecond: %+v", d, back)
		}
		again, err := Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("Marshal is not stable\nfirst:\n%s\nsecond:\n%s", out, again)
		}
	})
}
