package main

import (
	"context"
	"errors"

	"github.com/custode/custode/cmd/internal/verifycmd"
)

// runVerify checks an evidence bundle offline: the command custode-verify
// runs too (package verifycmd, which links no database).
func runVerify(ctx context.Context, e *env, args []string) error {
	err := verifycmd.Verify(ctx, "custode verify", args, e.stdin, e.stdout, e.stderr)
	var ue *verifycmd.UsageError
	var fe *verifycmd.FailedError
	switch {
	case errors.As(err, &ue):
		return &usageError{ue.Msg}
	case errors.As(err, &fe):
		return &failedError{fe.Msg}
	}
	return err
}
