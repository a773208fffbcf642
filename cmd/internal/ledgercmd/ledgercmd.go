// Package ledgercmd holds the ledger commands of custode: ledger append,
// verify, get, proof and checkpoints.
package ledgercmd

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/progress"
	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
)

// RunAppend appends PEC events given by hand (a migration, a
// correction), each marked as imported: its time is only what was given.
// The archive's own kinds (checkpoint, query, export, outage, …) are
// refused: only custode writes them.
func RunAppend(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	fs := cli.Flags(e, "ledger append", &data)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: custode ledger append [-data DIR] [FILE|-]\n\nEach line of FILE (default: standard input) is one PEC event as JSON, with\nthe field names of ledger/FORMAT.md (no seq, prev or v), at most %s in all.\nEvery entry appended is marked as imported (details.%s).\n", cli.ByteCount(cli.InputEvents.Max), ledger.DetailImported)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	name := fs.Arg(0)
	if name == "" {
		name = "-"
	}
	in, err := cli.OpenInput(ctx, e, name, cli.InputEvents)
	if err != nil {
		return err
	}
	defer in.Close()
	// Read and check every event before appending any.
	events, err := record.ReadImports(ctx, in, time.Now())
	var le *record.LineError
	switch {
	case errors.As(err, &le):
		return &cli.UsageError{Msg: le.Error()}
	case errors.Is(err, bufio.ErrTooLong):
		return &cli.UsageError{Msg: fmt.Sprintf("%s: a line longer than %s", name, cli.ByteCount(record.MaxImportLine))}
	case err != nil:
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	for len(events) > 0 {
		n := min(len(events), ledger.MaxAppendEvents)
		seqs, err := l.Append(ctx, events[:n]...)
		if err != nil {
			return err
		}
		for _, s := range seqs {
			fmt.Fprintln(e.Stdout, s)
		}
		events = events[n:]
	}
	return cli.CloseLedger(e, l)
}

// RunVerify runs custode ledger verify: recompute chain and tree, check
// every checkpoint.
func RunVerify(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	var from, to uint64
	var requireTS, asJSON bool
	fs := cli.Flags(e, "ledger verify", &data)
	fs.Uint64Var(&from, "from", 0, "first entry to check")
	fs.Uint64Var(&to, "to", 0, "check entries before this one (0: to the end)")
	fs.BoolVar(&requireTS, "require-timestamps", false, "fail on checkpoints still waiting for their RFC 3161 token")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON document")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if to != 0 && to <= from {
		return &cli.UsageError{Msg: fmt.Sprintf("-to %d must be after -from %d", to, from)}
	}
	c, l, err := openReadOnly(ctx, e, data)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	roots, tsaRoots, err := c.Trust()
	if err != nil {
		return err
	}
	p := progress.New(e.Stderr, "ledger verify: entries")
	r, err := l.Verify(ctx, ledger.VerifyOptions{From: from, To: to, Roots: roots, TSARoots: tsaRoots, RequireTimestamps: requireTS,
		Progress: p.Func()})
	p.Done()
	if err != nil {
		return err
	}
	if asJSON {
		if err := cli.WriteJSON(e, ledgerVerifyJSON(r)); err != nil {
			return err
		}
	} else {
		printLedgerVerify(e, r)
	}
	if r.OK() {
		return nil
	}
	return &cli.FailedError{Msg: fmt.Sprintf("%d problems, the first: %s", len(r.Problems), r.Problems[0])}
}

func printLedgerVerify(e *cli.Env, r *ledger.Report) {
	if r.To > r.From {
		fmt.Fprintf(e.Stdout, "entries %d-%d: chain and tree recomputed in %v (%.0f entries/s)\n",
			r.From, r.To-1, r.Elapsed.Round(time.Millisecond), float64(r.To-r.From)/max(r.Elapsed.Seconds(), 1e-9))
	} else {
		fmt.Fprintln(e.Stdout, "entries: none in range")
	}
	fmt.Fprintf(e.Stdout, "checkpoints: %d checked, %d signatures verified, %d timestamps verified, %d pending\n",
		r.Checkpoints, r.Signatures, r.Timestamps, r.PendingTimestamps)
	for _, n := range r.Notes {
		fmt.Fprintf(e.Stdout, "note: %s\n", n)
	}
	if r.OK() {
		fmt.Fprintln(e.Stdout, "OK")
		return
	}
	fmt.Fprintf(e.Stdout, "FIRST INCONSISTENCY: %s\n", r.Problems[0])
	for _, p := range r.Problems[1:] {
		fmt.Fprintf(e.Stdout, "also: %s\n", p)
	}
}

// VerifyReport is ledger verify -json's document: the facts of the
// text report. Problems are in the order found; the first is the first
// inconsistency.
type VerifyReport struct {
	OK                bool                `json:"ok"`
	From              uint64              `json:"from"` // the entries checked, [from, to)
	To                uint64              `json:"to"`
	Checkpoints       int                 `json:"checkpoints"`
	Signatures        int                 `json:"signatures"`
	Timestamps        int                 `json:"timestamps"`
	PendingTimestamps int                 `json:"pending_timestamps"`
	Purged            int                 `json:"purged"`
	ElapsedSeconds    float64             `json:"elapsed_seconds"`
	Notes             []string            `json:"notes"`
	Problems          []ledgerVerifyIssue `json:"problems"`
}

// ledgerVerifyIssue is one problem; seq or checkpoint is absent when the
// problem is not one entry's or one checkpoint's.
type ledgerVerifyIssue struct {
	Seq        *int64 `json:"seq,omitempty"`
	Checkpoint *int64 `json:"checkpoint,omitempty"`
	Message    string `json:"message"`
	Text       string `json:"text"` // as the text report prints it
}

func ledgerVerifyJSON(r *ledger.Report) VerifyReport {
	j := VerifyReport{OK: r.OK(), From: r.From, To: r.To, Checkpoints: r.Checkpoints, Signatures: r.Signatures,
		Timestamps: r.Timestamps, PendingTimestamps: r.PendingTimestamps, Purged: r.Purged,
		ElapsedSeconds: r.Elapsed.Seconds(), Notes: append([]string{}, r.Notes...), Problems: []ledgerVerifyIssue{}}
	for _, p := range r.Problems {
		i := ledgerVerifyIssue{Message: p.Message, Text: p.String()}
		if p.Seq >= 0 {
			i.Seq = &p.Seq
		}
		if p.Checkpoint >= 0 {
			i.Checkpoint = &p.Checkpoint
		}
		j.Problems = append(j.Problems, i)
	}
	return j
}

func seqArg(fs interface{ Arg(int) string }) (uint64, error) {
	s, err := strconv.ParseUint(fs.Arg(0), 10, 64)
	if err != nil {
		return 0, &cli.UsageError{Msg: fmt.Sprintf("want a sequence number, got %q", fs.Arg(0))}
	}
	return s, nil
}

// openReadOnly loads the configuration of data and opens its ledger
// read-only.
func openReadOnly(ctx context.Context, e *cli.Env, data string) (*config.Config, *ledger.Ledger, error) {
	c, err := config.Load(data)
	if err != nil {
		return nil, nil, err
	}
	l, err := c.OpenLedgerReadOnly(ctx, e)
	return c, l, err
}

// openForEntry parses "[-data DIR] SEQ" and opens the ledger read-only.
func openForEntry(ctx context.Context, e *cli.Env, name string, args []string) (*ledger.Ledger, uint64, error) {
	var data string
	fs := cli.Flags(e, name, &data)
	if err := cli.Parse(fs, args, 1); err != nil {
		return nil, 0, err
	}
	seq, err := seqArg(fs)
	if err != nil {
		return nil, 0, err
	}
	_, l, err := openReadOnly(ctx, e, data)
	return l, seq, err
}

// RunGet runs custode ledger get: print an entry in its canonical bytes.
func RunGet(ctx context.Context, e *cli.Env, args []string) error {
	l, seq, err := openForEntry(ctx, e, "ledger get", args)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	_, raw, err := l.Entry(ctx, seq)
	if raw == nil {
		return err
	}
	_, err = e.Stdout.Write(raw)
	fmt.Fprintln(e.Stdout)
	return err
}

// RunProof runs custode ledger proof: print an entry's inclusion proof to
// the newest checkpoint.
func RunProof(ctx context.Context, e *cli.Env, args []string) error {
	l, seq, err := openForEntry(ctx, e, "ledger proof", args)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	p, err := export.ProveEntry(ctx, l, seq)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// RunCheckpoints runs custode ledger checkpoints: list checkpoints, and
// write them as files.
func RunCheckpoints(ctx context.Context, e *cli.Env, args []string) error {
	var data, write string
	fs := cli.Flags(e, "ledger checkpoints", &data)
	fs.StringVar(&write, "write", "", "write every checkpoint as .txt, .p7s and .tsr files to this directory")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	_, l, err := openReadOnly(ctx, e, data)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	cps, err := l.Checkpoints(ctx)
	if err != nil {
		return err
	}
	if write != "" {
		if err := os.MkdirAll(write, 0o755); err != nil {
			return err
		}
	}
	for _, cp := range cps {
		state := "timestamped"
		if cp.Pending() {
			state = "timestamp pending"
		}
		fmt.Fprintf(e.Stdout, "%10d  %s  %s  %s\n", cp.Size, cp.Time.Format(time.RFC3339), hex.EncodeToString(cp.Root[:]), state)
		if write != "" {
			if _, err := cp.WriteFiles(write); err != nil {
				return err
			}
		}
	}
	return nil
}
