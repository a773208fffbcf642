// Package quarantinecmd holds the commands of custode that read the virus
// quarantine: quarantine list and quarantine export.
package quarantinecmd

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/policies"
)

// RunList lists the quarantine of infected messages: one line
// per finding, oldest first, with the ID that quarantine export takes.
func RunList(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	fs := cli.Flags(e, "quarantine list", &data)
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	q, err := c.OpenQuarantine(ctx, policies.Period{})
	if err != nil {
		return err
	}
	recs, err := q.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		fmt.Fprintf(e.Stdout, "%s\t%s\t%s\t%s\t%d bytes\tretain until %s\t%s\tfrom %s to %s\n",
			r.ID, r.Time.UTC().Format(time.RFC3339), r.Point, quarantineLine(r.Virus), r.Size, r.RetainUntil.UTC().Format(time.RFC3339),
			quarantineLine(r.Identificativo), quarantineLine(r.Mittente), quarantineLine(strings.Join(r.Destinatari, ",")))
	}
	fmt.Fprintf(e.Stdout, "%d findings\n", len(recs))
	return nil
}

// RunExport writes one quarantined message, for an audit, as a
// ZIP: the message exactly as received (it holds a virus), its findings,
// the WORM object's retention and SHA256SUMS. The export is recorded in
// the ledger first.
func RunExport(ctx context.Context, e *cli.Env, args []string) error {
	var data, out, actor string
	fs := cli.Flags(e, "quarantine export", &data)
	fs.StringVar(&out, "out", "", "the ZIP file to write (required)")
	fs.StringVar(&actor, "actor", cli.DefaultActor(e), "who asks for the export")
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 || out == "" {
		return &cli.UsageError{Msg: "want -out FILE and the ID (SHA-256) of a quarantined message, as quarantine list prints it"}
	}
	id := fs.Arg(0)
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	q, err := c.OpenQuarantine(ctx, policies.Period{})
	if err != nil {
		return err
	}
	var z bytes.Buffer
	if err := q.Export(ctx, id, &z); err != nil {
		return err
	}
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	access := record.Access{Export: true, Actor: actor, What: "virus quarantine", Details: map[string]string{"id": id}}
	if _, err := c.Recorder(l).Access(ctx, access); err != nil {
		return err
	}
	if err := durable.WriteFile(out, z.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s written to %s (message.eml holds a virus)\n", id, out)
	return nil
}

// quarantineLine keeps a value of a record on its line of the listing.
func quarantineLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
