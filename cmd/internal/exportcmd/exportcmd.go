// Package exportcmd holds the export commands of custode: export receipt,
// export extract and audit.
package exportcmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/progress"
	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger/record"
)

// RunReceipt writes the evidence bundle of a ricevuta: the entry of
// identificativo of the kind asked (and, for a consegna, of the
// recipient), and records the export in the ledger.
func RunReceipt(ctx context.Context, e *cli.Env, args []string) error {
	var data, id, kind, recipient, out, actor string
	fs := cli.Flags(e, "export receipt", &data)
	fs.StringVar(&id, "id", "", "the identificativo of the transaction (required)")
	fs.StringVar(&kind, "kind", "accettazione", "accettazione, non-accettazione, presa-in-carico, avvenuta-consegna, errore-consegna or busta")
	fs.StringVar(&recipient, "recipient", "", "for avvenuta-consegna and errore-consegna: the recipient")
	fs.StringVar(&out, "out", "", "the bundle to write (a .zip file; required)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who asks for the export")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	k, ok := export.ReceiptKind(kind)
	if id == "" || out == "" || !ok {
		return &cli.UsageError{Msg: "-id and -out are required, and -kind one of " + export.ReceiptKindNames}
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
	entry, err := export.FindReceipt(ctx, l, id, k, recipient)
	switch {
	case errors.Is(err, export.ErrNoReceipt):
		return &cli.FailedError{Msg: fmt.Sprintf("no %s entry for %s in the ledger", kind, id)}
	case errors.Is(err, export.ErrRecipientNeeded):
		return &cli.UsageError{Msg: "the transaction has several recipients: give -recipient"}
	case err != nil:
		return err
	}
	ident, err := c.ExportIdentity()
	if err != nil {
		return err
	}
	store, err := c.ArchiveStore(ctx)
	if err != nil {
		return err
	}
	// The export is itself evidence: recorded before the bundle exists,
	// so that a checkpoint after it covers it.
	access := record.Access{Export: true, Actor: actor, Identificativo: id, What: "evidence bundle",
		Details: map[string]string{"kind": kind, "seq": fmt.Sprint(entry.Seq)}}
	if _, err := c.Recorder(l).Access(ctx, access); err != nil {
		return err
	}
	b, err := export.Build(ctx, export.BundleOptions{Ledger: l, Store: store, Seq: entry.Seq, Signer: ident.Signer, Stamper: ident.Stamper, GestoreCA: ident.CAPEM, TSACA: ident.TSAPEM})
	if errors.Is(err, export.ErrNoCheckpoint) {
		return &cli.FailedError{Msg: fmt.Sprintf("entry %d is not yet covered by a timestamped checkpoint: try again after the next checkpoint (custode serve makes one every 10 s)", entry.Seq)}
	}
	if err != nil {
		return err
	}
	written, err := b.WriteFiles(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %s: entry %d (%s), %s, proof to checkpoint %d\n", strings.Join(written, " "), entry.Seq, entry.Kind, b.Origin(), b.Checkpoint.Size)
	return nil
}

// RunExtract writes a titolare's log extract for a period and
// records the export in the ledger.
func RunExtract(ctx context.Context, e *cli.Env, args []string) error {
	var data, mailbox, from, to, out, actor string
	fs := cli.Flags(e, "export extract", &data)
	fs.StringVar(&mailbox, "mailbox", "", "the titolare's mailbox (required)")
	fs.StringVar(&from, "from", "", "start of the period, date or RFC 3339 (required)")
	fs.StringVar(&to, "to", "", "end of the period, excluded (default: now)")
	fs.StringVar(&out, "out", "", "the extract to write (a .zip file; required)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who asks for the extract")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if mailbox == "" || from == "" || out == "" {
		return &cli.UsageError{Msg: "-mailbox, -from and -out are required"}
	}
	mailbox, err := cli.MailboxArg(mailbox)
	if err != nil {
		return err
	}
	f, t, err := ParsePeriod(from, to)
	if err != nil {
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
	ident, err := c.ExportIdentity()
	if err != nil {
		return err
	}
	access := record.Access{Export: true, Actor: actor, What: "log extract", From: f, To: t, Details: map[string]string{"mailbox": mailbox}}
	if _, err := c.Recorder(l).Access(ctx, access); err != nil {
		return err
	}
	p := progress.New(e.Stderr, "export extract: entries")
	b, err := export.Extract(ctx, export.ExtractOptions{Ledger: l, Mailbox: mailbox, From: f, To: t, Signer: ident.Signer, Stamper: ident.Stamper, GestoreCA: ident.CAPEM, TSACA: ident.TSAPEM,
		Progress: p.Func()})
	p.Done()
	if errors.Is(err, export.ErrNoCheckpoint) {
		return &cli.FailedError{Msg: "no timestamped checkpoint yet: try again after the next one"}
	}
	if err != nil {
		return err
	}
	written, err := b.WriteFiles(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %s: log of %s up to checkpoint %d (JSON with proofs, CSV, log lines, HTML, PDF)\n", strings.Join(written, " "), mailbox, b.Checkpoint.Size)
	return nil
}

// RunAudit writes the audit report of a period: text on standard output,
// and with -out the report as JSON, text and PDF, and the AgID datasets
// P01 and P02 as CSV.
func RunAudit(ctx context.Context, e *cli.Env, args []string) error {
	var data, from, to, outDir, code, actor string
	fs := cli.Flags(e, "audit", &data)
	fs.StringVar(&from, "from", "", "start of the period, date or RFC 3339 (required)")
	fs.StringVar(&to, "to", "", "end of the period, excluded (default: now)")
	fs.StringVar(&outDir, "out", "", "directory to write report.json, report.txt, report.pdf, P01.csv and P02.csv into")
	fs.StringVar(&code, "cod-gest-pec", "", "the gestore's code for the AgID statistics (default: custode.json's cod_gest_pec)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who asks for the report")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (report.json's)")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if from == "" {
		return &cli.UsageError{Msg: "-from is required"}
	}
	f, t, err := ParsePeriod(from, to)
	if err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	code = cmp.Or(code, c.CodGestPEC)
	if outDir != "" && code == "" {
		return &cli.UsageError{Msg: "P01 needs the gestore's code in AgID's statistics: set cod_gest_pec in custode.json or give -cod-gest-pec"}
	}
	store, roots, tsaRoots, err := c.TrustedArchive(ctx)
	if err != nil {
		return err
	}
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	keep, err := c.PolicyDir().Retention()
	if err != nil {
		return err
	}
	if _, err := c.Recorder(l).Access(ctx, record.Access{Export: true, Actor: actor, What: "audit report", From: f, To: t}); err != nil {
		return err
	}
	rep, err := export.Audit(ctx, export.AuditOptions{Ledger: l, Store: store, Roots: roots, TSARoots: tsaRoots, From: f, To: t,
		Gestore: c.Gestore, MinRetainUntil: keep.Log.AddTo, Antivirus: c.AntivirusStatus()})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := cli.WriteJSON(e, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(e.Stdout, rep.Text())
	}
	if outDir != "" {
		mailboxes, err := c.CountMailboxes(ctx, e)
		if err != nil {
			return fmt.Errorf("P01's NumCaselle: %w", err)
		}
		if err := rep.WriteFiles(outDir, code, len(c.Domains()), mailboxes); err != nil {
			return err
		}
		if *asJSON {
			fmt.Fprintf(e.Stderr, "written to %s\n", outDir) // stdout holds only the JSON
		} else {
			fmt.Fprintf(e.Stdout, "\nwritten to %s\n", outDir)
		}
	}
	if !rep.OK() {
		return &cli.FailedError{Msg: "the audit found problems"}
	}
	return nil
}

// ParsePeriod reads -from and -to (default now), dates or RFC 3339 times.
func ParsePeriod(from, to string) (time.Time, time.Time, error) {
	f, err := cli.ParseTimeFlag("from", from)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	t := time.Now()
	if to != "" {
		if t, err = cli.ParseTimeFlag("to", to); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, &cli.UsageError{Msg: "-from must be before -to"}
	}
	return f, t, nil
}
