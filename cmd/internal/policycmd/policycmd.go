// Package policycmd holds the policy commands of custode: policy check and
// policy apply.
package policycmd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
)

// RunCheck runs custode policy check: validate a policy file (errors as
// file:line).
func RunCheck(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.Flags(e, "policy check", nil)
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &cli.UsageError{Msg: "want one policy file"}
	}
	raw, err := cli.ReadInput(ctx, e, fs.Arg(0), cli.InputPolicy)
	if err != nil {
		return err
	}
	p, err := policies.Parse(fs.Arg(0), raw)
	if err != nil {
		fmt.Fprintln(e.Stdout, err)
		return &cli.FailedError{Msg: "the policy has errors"}
	}
	fmt.Fprintf(e.Stdout, "%s: OK, version %d, sha256 %s\n", fs.Arg(0), p.Version, hex.EncodeToString(p.SHA256[:]))
	fmt.Fprintf(e.Stdout, "retention: log %s, archivio di sicurezza %s, virus quarantine %s, exports %s\n",
		p.Retention.Log, p.Retention.Archivio, p.Retention.VirusQuarantine, p.Retention.Exports)
	fmt.Fprintf(e.Stdout, "%d domains, %d mailboxes, %d operators, %d auditors, %d legal users\n",
		len(p.Domains), len(p.Mailboxes), len(p.Roles.Operators), len(p.Roles.Auditors), len(p.Roles.Legal))
	return nil
}

// RunApply checks a policy file and makes it the data directory's
// active policy (retention.PolicyDir.Apply: the change recorded first).
func RunApply(ctx context.Context, e *cli.Env, args []string) error {
	var data, actor string
	fs := cli.Flags(e, "policy apply", &data)
	fs.StringVar(&actor, "actor", "", "who applies the policy (default: the user running the command)")
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &cli.UsageError{Msg: "want one policy file"}
	}
	if actor == "" {
		actor = cli.DefaultActor(e)
	}
	if actor == "" {
		return &cli.UsageError{Msg: "give -actor: who applies the policy"}
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	// One read: the bytes kept and recorded are the bytes checked.
	raw, err := cli.ReadInput(ctx, e, fs.Arg(0), cli.InputPolicy)
	if err != nil {
		return err
	}
	p, err := policies.Parse(fs.Arg(0), raw)
	if err != nil {
		fmt.Fprintln(e.Stdout, err)
		return &cli.FailedError{Msg: "the policy has errors: nothing applied"}
	}
	var ve *retention.VersionError
	if err := c.PolicyDir().CheckVersion(p); errors.As(err, &ve) {
		return &cli.FailedError{Msg: ve.Error() + ": nothing applied"}
	} else if err != nil {
		return err
	}
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return err
	}
	defer cli.CloseLedger(e, l)
	a, err := c.PolicyDir().Apply(ctx, c.Recorder(l), p, raw, actor)
	if errors.As(err, &ve) {
		return &cli.FailedError{Msg: ve.Error() + ": nothing applied"}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "policy version %d applied by %s (sha256 %s), ledger entry %d; a running custode serve uses its roles, mailbox options and archivio di sicurezza at once, its retention periods from its next start\n",
		p.Version, actor, a.SHA256, a.Seq)
	return nil
}
