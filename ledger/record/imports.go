package record

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/custode/custode/ledger"
)

// ImportedLayout is the layout of detail ledger.DetailImported: the
// riferimento temporale's.
const ImportedLayout = "2006-01-02T15:04:05.000000000Z"

// MaxImportLine is the longest line ReadImports reads.
const MaxImportLine = 2 << 20

// LineError is a line ReadImports refuses.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ReadImports reads PEC events given by hand (a migration, a correction),
// one JSON object per line with the field names of ledger/FORMAT.md, and
// marks each as imported at time at: its riferimento temporale is only what
// was given. The archive's own kinds (checkpoint, query, export, outage,
// ...) are refused, as is any event the ledger would refuse, with a
// *LineError; nothing is returned unless every line is good. A line longer
// than MaxImportLine fails with an error wrapping bufio.ErrTooLong.
func ReadImports(ctx context.Context, r io.Reader, at time.Time) ([]ledger.Event, error) {
	imported := at.UTC().Format(ImportedLayout)
	var events []ledger.Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxImportLine)
	for line := 1; sc.Scan(); line++ {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		// The kind first: a system kind is refused as such, whatever its
		// details, before the event is validated.
		var head struct {
			Kind ledger.Kind `json:"kind"`
		}
		if json.Unmarshal(sc.Bytes(), &head) == nil && head.Kind != "" && !head.Kind.IsPEC() {
			return nil, &LineError{line, notPEC(head.Kind)}
		}
		ev, err := ledger.ParseEventJSON(sc.Bytes())
		if err != nil {
			return nil, &LineError{line, err}
		}
		if !ev.Kind.IsPEC() {
			return nil, &LineError{line, notPEC(ev.Kind)}
		}
		if ev.Details == nil {
			ev.Details = map[string]string{}
		}
		ev.Details[ledger.DetailImported] = imported
		if err := ev.Validate(); err != nil {
			return nil, &LineError{line, err}
		}
		events = append(events, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return events, nil
}

func notPEC(k ledger.Kind) error {
	return fmt.Errorf("kind %q is one custode records itself: ledger append takes PEC events only", k)
}
