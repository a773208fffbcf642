// Package progress reports the progress of long commands on a terminal.
//
// A Reporter writes "\r<what>: N of M (P%)" to standard error, at most
// every Interval, and only when standard error is a terminal: scripts,
// tests and commands run through the admin socket see no output at all.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Interval is the least time between two lines a Reporter writes.
const Interval = 500 * time.Millisecond

// Reporter writes progress lines for one piece of work. The zero value and
// a nil *Reporter report nothing. It is safe for concurrent use.
type Reporter struct {
	w    io.Writer // nil: report nothing
	what string
	now  func() time.Time

	mu      sync.Mutex
	last    time.Time
	written bool
}

// New returns a Reporter for the work named what, writing to w only if w
// is a terminal (an *os.File that is a character device); otherwise the
// Reporter writes nothing.
func New(w io.Writer, what string) *Reporter {
	if !IsTerminal(w) {
		return &Reporter{}
	}
	return NewTo(w, what, time.Now)
}

// NewTo returns a Reporter that always writes to w, taking the time from
// now (time.Now if nil). It is for tests and for callers that decided
// themselves that w is a terminal.
func NewTo(w io.Writer, what string, now func() time.Time) *Reporter {
	if now == nil {
		now = time.Now
	}
	return &Reporter{w: w, what: what, now: now}
}

// IsTerminal reports whether w is an *os.File open on a character device,
// other than os.DevNull: a terminal, without a terminal library.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0 && f.Name() != os.DevNull
}

// Func returns r.Update as a func(done, total uint64), or nil when r
// reports nothing, ready for a library's Progress option.
func (r *Reporter) Func() func(done, total uint64) {
	if r == nil || r.w == nil {
		return nil
	}
	return r.Update
}

// Update reports that done of total units are finished. A line is written
// at the first call, then at most every Interval, and always when done
// reaches total. total 0 means unknown: only done is shown.
func (r *Reporter) Update(done, total uint64) {
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	if r.written && t.Sub(r.last) < Interval && (total == 0 || done < total) {
		return
	}
	r.last = t
	r.written = true
	switch {
	case total == 0:
		fmt.Fprintf(r.w, "\r%s: %d", r.what, done)
	default:
		fmt.Fprintf(r.w, "\r%s: %d of %d (%d%%)", r.what, done, total, percent(done, total))
	}
}

// Done ends the line with a newline if anything was written.
func (r *Reporter) Done() {
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written {
		fmt.Fprintln(r.w)
		r.written = false
	}
}

func percent(done, total uint64) uint64 {
	if done >= total {
		return 100
	}
	// done < total: done*100 may overflow for huge counts, so divide first.
	if done > ^uint64(0)/100 {
		return done / (total / 100)
	}
	return done * 100 / total
}
