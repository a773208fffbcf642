package main

import (
	"context"
	"errors"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/verifycmd"
)

// runVerify checks an evidence bundle offline: the command custode-verify
// runs too (package verifycmd, which links no database).
func runVerify(ctx context.Context, e *cli.Env, args []string) error {
	err := verifycmd.Verify(ctx, "custode verify", args, e.Stdin, e.Stdout, e.Stderr)
	var ue *verifycmd.UsageError
	var fe *verifycmd.FailedError
	switch {
	case errors.As(err, &ue):
		return &cli.UsageError{Msg: ue.Msg}
	case errors.As(err, &fe):
		return &cli.FailedError{Msg: fe.Msg}
	}
	return err
}
