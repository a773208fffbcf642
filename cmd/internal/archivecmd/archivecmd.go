// Package archivecmd holds the commands of custode that read the sealed
// segments in the archive: archive verify, archive find and ledger rebuild.
package archivecmd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/progress"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/retention"
)

// RunVerify runs custode archive verify: re-read the sealed segments from
// the archive and check them against the ledger.
func RunVerify(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	var noLedger, asJSON bool
	fs := cli.Flags(e, "archive verify", &data)
	fs.BoolVar(&noLedger, "no-ledger", false, "check the archive alone, without the ledger's records of what it sealed")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON document")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	store, roots, tsaRoots, err := c.TrustedArchive(ctx)
	if err != nil {
		return err
	}
	opts := seal.VerifyOptions{Roots: roots, TSARoots: tsaRoots}
	var entries retention.EntryReader // the segments' last entries, if the ledger is there
	if !noLedger {
		l, err := c.OpenLedgerReadOnly(ctx, e)
		if err != nil {
			return fmt.Errorf("%w (use -no-ledger to check the archive alone)", err)
		}
		defer cli.CloseLedger(e, l)
		if opts.Seals, err = l.Seals(ctx); err != nil {
			return err
		}
		opts.Seals = append([]ledger.Seal{}, opts.Seals...) // not nil: compare
		entries = l
	}
	// The sealer's rule, at the legal minimum.
	opts.MinRetainUntil = retention.SegmentMinimum(ctx, entries, retention.LegalMinimum())
	p := progress.New(e.Stderr, "archive verify: segments")
	opts.Progress = p.Func()
	r, err := seal.Verify(ctx, store, opts)
	p.Done()
	if err != nil {
		return err
	}
	if asJSON {
		if err := cli.WriteJSON(e, archiveVerifyJSON(r, opts.Seals)); err != nil {
			return err
		}
	} else {
		printArchiveVerify(e, r, opts.Seals)
	}
	if !r.OK() {
		return &cli.FailedError{Msg: fmt.Sprintf("archive verify: %d problems", len(r.Problems))}
	}
	return nil
}

func printArchiveVerify(e *cli.Env, r *seal.Report, seals []ledger.Seal) {
	fmt.Fprintf(e.Stdout, "segments: %d\nentries: %d\n", r.Segments, r.Entries)
	if r.Checkpoint != nil {
		fmt.Fprintf(e.Stdout, "last checkpoint: size %d, root %x, time %s\n", r.Checkpoint.Size, r.Checkpoint.Root, r.Checkpoint.Time.Format(time.RFC3339))
	}
	if seals != nil {
		fmt.Fprintf(e.Stdout, "seals recorded in the ledger: %d\n", len(seals))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(e.Stdout, "PROBLEM: %s\n", p)
	}
	if r.OK() {
		fmt.Fprintln(e.Stdout, "archive verify: OK")
	}
}

// VerifyReport is archive verify -json's document: the facts of
// the text report. SealsRecorded is absent with -no-ledger.
type VerifyReport struct {
	OK             bool                  `json:"ok"`
	Segments       int                   `json:"segments"`
	Entries        uint64                `json:"entries"`
	LastCheckpoint *archiveCheckpointRef `json:"last_checkpoint,omitempty"`
	SealsRecorded  *int                  `json:"seals_recorded,omitempty"`
	Problems       []string              `json:"problems"`
}

// archiveCheckpointRef names the last checkpoint of the archive.
type archiveCheckpointRef struct {
	Size uint64    `json:"size"`
	Root string    `json:"root"` // hex
	Time time.Time `json:"time"`
}

func archiveVerifyJSON(r *seal.Report, seals []ledger.Seal) VerifyReport {
	j := VerifyReport{OK: r.OK(), Segments: r.Segments, Entries: r.Entries, Problems: append([]string{}, r.Problems...)}
	if cp := r.Checkpoint; cp != nil {
		j.LastCheckpoint = &archiveCheckpointRef{Size: cp.Size, Root: hex.EncodeToString(cp.Root[:]), Time: cp.Time}
	}
	if seals != nil {
		n := len(seals)
		j.SealsRecorded = &n
	}
	return j
}

// RunLedgerRebuild runs custode ledger rebuild: rebuild a lost ledger store
// from the sealed segments in the archive (--from-archive).
func RunLedgerRebuild(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	var fromArchive bool
	fs := cli.Flags(e, "ledger rebuild", &data)
	fs.BoolVar(&fromArchive, "from-archive", false, "rebuild from the sealed segments in the archive (required)")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if !fromArchive {
		return &cli.UsageError{Msg: "ledger rebuild: --from-archive is required (the archive is the only source)"}
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.LedgerDir()); err == nil {
		return fmt.Errorf("ledger rebuild: %s exists: move it away first; a rebuild never writes over a ledger", c.LedgerDir())
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	store, roots, tsaRoots, err := c.TrustedArchive(ctx)
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: c.LedgerDir(), Logger: e.Log})
	if err != nil {
		return err
	}
	p := progress.New(e.Stderr, "ledger rebuild: segments")
	last, err := seal.RebuildWith(ctx, store, l, seal.RebuildOptions{Roots: roots, TSARoots: tsaRoots, Progress: p.Func()})
	p.Done()
	if err != nil {
		l.Close()
		return err
	}
	h := l.Head()
	if err := l.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "rebuilt %d entries; root %x equals checkpoint %d's, timestamped\n", h.Size, h.Root, last.Size)
	return nil
}

// RunFind queries the sealed segments in the archive: the log of
// ranges the ledger no longer holds, or of a ledger that is lost. Every
// segment read is checked against the trust anchors first. The query is
// recorded in the ledger when there is one.
func RunFind(ctx context.Context, e *cli.Env, args []string) error {
	var data, actor, reason, from, to, kind, cursor string
	var q ledger.Query
	var noLedger bool
	fs := cli.Flags(e, "archive find", &data)
	fs.StringVar(&q.Identificativo, "id", "", "an identificativo")
	fs.StringVar(&q.ClientMessageID, "message-id", "", "the sender client's Message-ID")
	fs.StringVar(&q.Mailbox, "mailbox", "", "a mittente or destinatario")
	fs.StringVar(&kind, "kind", "", "an event kind (accettazione, posta-certificata, ...)")
	fs.StringVar(&from, "from", "", "riferimento temporale from (date or RFC 3339)")
	fs.StringVar(&to, "to", "", "riferimento temporale before (date or RFC 3339)")
	fs.IntVar(&q.Limit, "limit", 100, "entries per page (1-1000)")
	fs.StringVar(&cursor, "cursor", "", "the next cursor a previous page printed")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who asks")
	fs.StringVar(&reason, "reason", "", "why (recorded with the query)")
	fs.BoolVar(&noLedger, "no-ledger", false, "the ledger is lost: query the archive without recording the query")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return &cli.UsageError{Msg: "-limit: want 1 to 1000"}
	}
	if kind != "" {
		q.Kind = ledger.Kind(kind)
		if !q.Kind.IsPEC() && !q.Kind.IsSystem() {
			return &cli.UsageError{Msg: fmt.Sprintf("-kind: unknown kind %q", kind)}
		}
	}
	var err error
	if q.From, err = cli.ParseTimeFlag("from", from); err != nil {
		return err
	}
	if q.To, err = cli.ParseTimeFlag("to", to); err != nil {
		return err
	}
	q.Cursor = cursor
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	store, roots, tsaRoots, err := c.TrustedArchive(ctx)
	if err != nil {
		return err
	}
	if !noLedger {
		// Recorded before the answer, as every query is.
		l, err := c.OpenLedger(ctx, e)
		if err != nil {
			return fmt.Errorf("%w (use -no-ledger if the ledger is lost)", err)
		}
		_, err = c.Recorder(l).Access(ctx, record.Access{Actor: actor, Identificativo: q.Identificativo, What: "archive find",
			Details: map[string]string{"reason": reason,
				"query": fmt.Sprintf("mailbox=%s message_id=%s kind=%s from=%s to=%s cursor=%s", q.Mailbox, q.ClientMessageID, q.Kind, from, to, cursor)}})
		cli.CloseLedger(e, l)
		if err != nil {
			return err
		}
	}
	page, err := seal.Find(ctx, store, seal.FindOptions{Query: q, Roots: roots, TSARoots: tsaRoots})
	if err != nil {
		return &cli.FailedError{Msg: err.Error()}
	}
	for _, en := range page.Entries {
		raw, err := en.Encode()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "%s\n", raw)
	}
	fmt.Fprintf(e.Stderr, "%d entries from %d checked segments", len(page.Entries), page.Segments)
	if page.Next != "" {
		fmt.Fprintf(e.Stderr, "; next page: -cursor %s", page.Next)
	}
	fmt.Fprintln(e.Stderr)
	return nil
}
