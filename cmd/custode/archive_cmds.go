package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/ledger"
)

func runArchiveVerify(ctx context.Context, e *env, args []string) error {
	var data string
	var noLedger bool
	fs := flags(e, "archive verify", &data)
	fs.BoolVar(&noLedger, "no-ledger", false, "check the archive alone, without the ledger's records of what it sealed")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c, err := loadConfig(data)
	if err != nil {
		return err
	}
	roots, tsaRoots, err := c.trust()
	if err != nil {
		return err
	}
	store, err := c.archiveStore(ctx)
	if err != nil {
		return err
	}
	opts := seal.VerifyOptions{
		Roots: roots, TSARoots: tsaRoots,
		MinRetainUntil: func(cp *ledger.Checkpoint) time.Time { return cp.Time.AddDate(0, seal.LogRetentionMonths, 0) },
	}
	if !noLedger {
		l, err := c.openLedgerReadOnly(ctx, e)
		if err != nil {
			return fmt.Errorf("%w (use -no-ledger to check the archive alone)", err)
		}
		opts.Seals, err = l.Seals(ctx)
		l.Close()
		if err != nil {
			return err
		}
		opts.Seals = append([]ledger.Seal{}, opts.Seals...) // not nil: compare
	}
	r, err := seal.Verify(ctx, store, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "segments: %d\nentries: %d\n", r.Segments, r.Entries)
	if r.Checkpoint != nil {
		fmt.Fprintf(e.stdout, "last checkpoint: size %d, root %x, time %s\n", r.Checkpoint.Size, r.Checkpoint.Root, r.Checkpoint.Time.Format(time.RFC3339))
	}
	if opts.Seals != nil {
		fmt.Fprintf(e.stdout, "seals recorded in the ledger: %d\n", len(opts.Seals))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(e.stdout, "PROBLEM: %s\n", p)
	}
	if !r.OK() {
		return &failedError{fmt.Sprintf("archive verify: %d problems", len(r.Problems))}
	}
	fmt.Fprintln(e.stdout, "archive verify: OK")
	return nil
}

func runLedgerRebuild(ctx context.Context, e *env, args []string) error {
	var data string
	var fromArchive bool
	fs := flags(e, "ledger rebuild", &data)
	fs.BoolVar(&fromArchive, "from-archive", false, "rebuild from the sealed segments in the archive (required)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if !fromArchive {
		return &usageError{"ledger rebuild: --from-archive is required (the archive is the only source)"}
	}
	c, err := loadConfig(data)
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.ledgerDir()); err == nil {
		return fmt.Errorf("ledger rebuild: %s exists: move it away first; a rebuild never writes over a ledger", c.ledgerDir())
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	roots, tsaRoots, err := c.trust()
	if err != nil {
		return err
	}
	store, err := c.archiveStore(ctx)
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: c.ledgerDir(), Logger: e.log})
	if err != nil {
		return err
	}
	last, err := seal.Rebuild(ctx, store, "", l, roots, tsaRoots)
	if err != nil {
		l.Close()
		return err
	}
	h := l.Head()
	if err := l.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "rebuilt %d entries; root %x equals checkpoint %d's, timestamped\n", h.Size, h.Root, last.Size)
	return nil
}
