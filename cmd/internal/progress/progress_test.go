package progress

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clock is a time source the test advances by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestUpdate(t *testing.T) {
	type step struct {
		advance     time.Duration
		done, total uint64
	}
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"first call writes", []step{{0, 1, 10}}, "\rentries: 1 of 10 (10%)"},
		{"rate limited", []step{{0, 1, 10}, {100 * time.Millisecond, 2, 10}, {100 * time.Millisecond, 3, 10}},
			"\rentries: 1 of 10 (10%)"},
		{"after the interval", []step{{0, 1, 10}, {Interval, 5, 10}},
			"\rentries: 1 of 10 (10%)\rentries: 5 of 10 (50%)"},
		{"the end always shows", []step{{0, 1, 4}, {time.Millisecond, 4, 4}},
			"\rentries: 1 of 4 (25%)\rentries: 4 of 4 (100%)"},
		{"unknown total", []step{{0, 7, 0}}, "\rentries: 7"},
		{"huge counts", []step{{0, 1 << 62, 1 << 63}}, "\rentries: 4611686018427387904 of 9223372036854775808 (50%)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := &clock{t: time.Unix(0, 0)}
			r := NewTo(&buf, "entries", c.now)
			for _, s := range tt.steps {
				c.t = c.t.Add(s.advance)
				r.Update(s.done, s.total)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			r.Done()
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("after Done: got %q, want a final newline", got)
			}
		})
	}
}

func TestDoneWithoutUpdate(t *testing.T) {
	var buf bytes.Buffer
	r := NewTo(&buf, "x", nil)
	r.Done()
	if buf.Len() != 0 {
		t.Errorf("Done with nothing written wrote %q", buf.String())
	}
}

// Not a terminal: nothing at all, and Func is nil so libraries skip it.
func TestNotTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for _, w := range []interface{ Write([]byte) (int, error) }{f, &buf, devnull} {
		if IsTerminal(w) {
			t.Errorf("%T is taken for a terminal", w)
		}
		r := New(w, "entries")
		if r.Func() != nil {
			t.Errorf("%T: Func is not nil", w)
		}
		r.Update(1, 2)
		r.Done()
	}
	if fi, _ := f.Stat(); fi.Size() != 0 || buf.Len() != 0 {
		t.Errorf("wrote to a non-terminal: file %d bytes, buffer %q", fi.Size(), buf.String())
	}
	var nilR *Reporter
	nilR.Update(1, 2)
	nilR.Done()
	if nilR.Func() != nil {
		t.Error("nil Reporter: Func is not nil")
	}
}
