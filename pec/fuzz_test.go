package pec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/custode/custode/pec/daticert"
)

// fuzzCorpus is the seed corpus of FuzzParse in testdata/fuzz/FuzzParse:
// our own built messages of every type and their tolerance variants, never
// the real samples.
const fuzzCorpus = "testdata/fuzz/FuzzParse"

// TestFuzzCorpus writes the seed corpus when run with -update, and checks
// that it exists otherwise.
func TestFuzzCorpus(t *testing.T) {
	if !*update {
		entries, err := os.ReadDir(fuzzCorpus)
		if err != nil || len(entries) < len(buildCases) {
			t.Fatalf("seed corpus %s: %d files, %v (go test -run TestFuzzCorpus -update writes it)", fuzzCorpus, len(entries), err)
		}
		return
	}
	seeds := map[string][]byte{}
	for _, c := range buildCases {
		_, b := buildCaseMessage(t, c)
		seeds["built-"+c.name] = b.Message
	}
	for _, c := range tolerance(t) {
		seeds["tolerance-"+c.name] = c.msg
	}
	busta := seeds["built-busta-trasporto"]
	seeds["hostile-truncated"] = busta[:len(busta)/2]
	seeds["hostile-nested-40"] = nested(40, false)
	seeds["hostile-nested-messages-40"] = nested(40, true)
	seeds["hostile-no-header"] = []byte("non è un messaggio")
	if err := os.RemoveAll(fuzzCorpus); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(fuzzCorpus, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, msg := range seeds {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", msg)
		if err := os.WriteFile(filepath.Join(fuzzCorpus, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParse checks that Parse, and what is built on its result, never
// panics, refuses only with the documented errors and returns coherent
// messages.
func FuzzParse(f *testing.F) {
	opts := ParseOptions{MaxMessageSize: 1 << 20}
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := Parse(msg, opts)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTooManyParts) {
				t.Fatalf("undocumented error: %v", err)
			}
			if m != nil {
				t.Fatal("a message and an error")
			}
			return
		}
		if m.Kind != KindNotPEC && m.Kind != KindUnknown && !m.Kind.IsPEC() {
			t.Fatalf("kind %q", m.Kind)
		}
		if m.Kind == KindNotPEC && (m.Daticert != nil || len(m.Problems) > 0) {
			t.Fatalf("non-PEC message with daticert or problems: %q", m.Problems)
		}
		if !m.Forwarded && !bytes.Equal(m.Raw, msg) {
			t.Fatal("Raw is not the message")
		}
		if m.Daticert != nil {
			if err := m.Daticert.Validate(); err != nil {
				t.Fatalf("daticert does not validate: %v", err)
			}
			if _, err := daticert.Marshal(m.Daticert); err != nil {
				t.Fatalf("daticert does not marshal: %v", err)
			}
		}
		if m.Original != nil {
			if _, err := Breve(m.Original); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrTooManyParts) {
				t.Fatalf("Breve: undocumented error: %v", err)
			}
		}
		if m.Kind == KindBustaTrasporto && m.Daticert != nil {
			tx, err := TransactionFromBusta(m, deliveredAt)
			if err != nil {
				t.Fatal(err)
			}
			tx.ReceiptFor(anna)
		}
		_ = (&Report{Kind: m.Kind, KindName: m.Kind.Name(), Header: m.Header, Problems: m.Problems}).String()
	})
}
