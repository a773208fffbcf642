// Package holdcmd holds the legal hold commands of custode (hold place,
// release and list) and purge.
package holdcmd

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/progress"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/retention"
)

// listFlag collects a repeated flag.
type listFlag []string

// String returns the values given, separated by commas.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set adds a value.
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// openRetention opens the ledger, the archive and the holds of a data
// directory.
func openRetention(ctx context.Context, e *cli.Env, data string) (*retention.Manager, *ledger.Ledger, error) {
	c, err := config.Load(data)
	if err != nil {
		return nil, nil, err
	}
	store, err := c.ArchiveStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	reg, err := c.OpenHolds(e)
	if err != nil {
		return nil, nil, err
	}
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	return &retention.Manager{Ledger: l, Store: store, Registry: reg, SegmentPrefix: seal.DefaultPrefix, Gestore: c.Gestore}, l, nil
}

// RunPlace runs custode hold place: put a legal hold on a mailbox,
// identificativi or a time range (-dry-run to list).
func RunPlace(ctx context.Context, e *cli.Env, args []string) error {
	var data, caseID, mailbox, from, to, reason, actor string
	var ids listFlag
	var dryRun bool
	fs := cli.Flags(e, "hold place", &data)
	fs.StringVar(&caseID, "case", "", "the case id (required)")
	fs.StringVar(&mailbox, "mailbox", "", "hold the transactions of this mailbox")
	fs.Var(&ids, "id", "hold this identificativo (repeatable)")
	fs.StringVar(&from, "from", "", "only from this time (date or RFC 3339)")
	fs.StringVar(&to, "to", "", "only before this time (date or RFC 3339)")
	fs.StringVar(&reason, "reason", "", "why (required)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who places the hold")
	fs.BoolVar(&dryRun, "dry-run", false, "list what would be held, change nothing")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if caseID == "" || reason == "" {
		return &cli.UsageError{Msg: "-case and -reason are required"}
	}
	f, err := cli.ParseTimeFlag("from", from)
	if err != nil {
		return err
	}
	t, err := cli.ParseTimeFlag("to", to)
	if err != nil {
		return err
	}
	if mailbox != "" {
		if mailbox, err = cli.MailboxArg(mailbox); err != nil {
			return err
		}
	}
	scope := retention.Scope{Mailbox: mailbox, Identificativi: ids, From: f, To: t}
	if err := scope.Validate(); err != nil {
		return &cli.UsageError{Msg: err.Error()}
	}
	m, l, err := openRetention(ctx, e, data)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	plan, err := m.Place(ctx, retention.Hold{Case: caseID, Scope: scope, Reason: reason, Actor: actor}, dryRun)
	if err != nil {
		return err
	}
	return plan.WriteText(e.Stdout)
}

// RunRelease runs custode hold release: release a case's legal hold
// (-dry-run to list).
func RunRelease(ctx context.Context, e *cli.Env, args []string) error {
	var data, caseID, actor string
	var dryRun bool
	fs := cli.Flags(e, "hold release", &data)
	fs.StringVar(&caseID, "case", "", "the case id (required)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who releases the hold")
	fs.BoolVar(&dryRun, "dry-run", false, "list what would be released, change nothing")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if caseID == "" {
		return &cli.UsageError{Msg: "-case is required"}
	}
	m, l, err := openRetention(ctx, e, data)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	plan, err := m.Release(ctx, caseID, actor, dryRun)
	if err != nil {
		return err
	}
	return plan.WriteText(e.Stdout)
}

// RunList runs custode hold list: list legal holds.
func RunList(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	var all bool
	fs := cli.Flags(e, "hold list", &data)
	fs.BoolVar(&all, "all", false, "list released holds too")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	reg, err := retention.OpenRegistry(c.HoldsFile())
	if err != nil {
		return err
	}
	holds, err := reg.Holds()
	if err != nil {
		return err
	}
	for _, h := range holds {
		if !h.Active() && !all {
			continue
		}
		fmt.Fprintln(e.Stdout, h.String())
	}
	return nil
}

// RunPurge runs custode purge: delete archivio di sicurezza objects past
// retention and not held (-dry-run to list).
func RunPurge(ctx context.Context, e *cli.Env, args []string) error {
	var data, actor string
	var dryRun bool
	fs := cli.Flags(e, "purge", &data)
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who runs the purge")
	fs.BoolVar(&dryRun, "dry-run", false, "list what would be purged, change nothing")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	// The retention classes of the applied policy; without one, the legal
	// minimum for both the log and the records of exports.
	keep, err := c.PolicyDir().Retention()
	if err != nil {
		return err
	}
	m, l, err := openRetention(ctx, e, data)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	// Archive objects first: the archivio di sicurezza and the sealed
	// segments past their retain-until; then the ledger's own copies of
	// the entries past retention (only those sealed, and not held).
	p := progress.New(e.Stderr, "purge: archive objects")
	m.Progress = p.Func()
	plan, err := m.Purge(ctx, []string{sicurezza.DefaultPrefix, seal.DefaultPrefix}, actor, dryRun)
	p.Done()
	if err != nil {
		return err
	}
	if err := plan.WriteText(e.Stdout); err != nil {
		return err
	}
	p = progress.New(e.Stderr, "purge: ledger entries")
	m.Progress = p.Func()
	lp, err := m.PurgeLog(ctx, keep, actor, dryRun)
	p.Done()
	if err != nil {
		return err
	}
	return lp.WriteText(e.Stdout)
}

var _ flag.Value = (*listFlag)(nil)
