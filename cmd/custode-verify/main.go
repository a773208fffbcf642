// Command custode-verify checks an evidence bundle or a log extract of
// custode offline, against a trust anchor: the same flags, report and exit
// status as "custode verify", in a small binary that links no database,
// for a court's expert or the other side.
//
// Usage:
//
//	custode-verify -anchor CA.pem [-gestore GESTORE.pem] BUNDLE.zip [PART2.zip ...]
//
// It exits 0 when every check passes, 1 when one fails, 2 on bad
// arguments.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/custode/custode/cmd/internal/verifycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := verifycmd.Run(ctx, "custode-verify", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
