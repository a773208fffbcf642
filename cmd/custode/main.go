// Command custode runs and inspects a PEC gestore's evidence archive.
//
// Usage:
//
//	custode <command> [flags]
//
// Run "custode help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand: its name (words separated by spaces), a line
// of help, and what it runs.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: where to write, and the logger.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
}

// usageError is a bad invocation: it exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// failedError is a check that ran and found problems: it exits with
// status 1 after the command has printed its report.
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// statusError is a check that ran and exits with a status of its own
// (custode pec inspect: 3 untrusted, 4 unsigned).
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func commands() []command {
	return []command{
		{"init", "create a data directory with a development PKI and configuration", runInit},
		{"serve", "run the gestore on embedded defaults: SMTP and IMAP points, ledger, checkpoints, built-in TSA, sealing", runServe},
		{"run", "the same as serve", runServe},
		{"demo", "two gestori on loopback exchange messages; print the receipts and ledger entries", runDemo},
		{"mailbox add", "create a mailbox (titolare) with a password read from stdin", runMailboxAdd},
		{"mailbox list", "list mailboxes with their quota and use", runMailboxList},
		{"mailbox passwd", "set a mailbox's password, read from stdin", runMailboxPasswd},
		{"mailbox quota", "set a mailbox's quota", runMailboxQuota},
		{"domain add", "add a PEC domain whose mailboxes this gestore keeps", runDomainAdd},
		{"domain list", "list the gestore's PEC domains", runDomainList},
		{"hold place", "put a legal hold on a mailbox, identificativi or a time range (-dry-run to list)", runHoldPlace},
		{"hold release", "release a case's legal hold (-dry-run to list)", runHoldRelease},
		{"hold list", "list legal holds", runHoldList},
		{"purge", "delete archivio di sicurezza objects past retention and not held (-dry-run to list)", runPurge},
		{"export receipt", "write the evidence bundle of a ricevuta (ZIP: receipt, entry, proof, checkpoint, token, manifest)", runExportReceipt},
		{"export extract", "write a titolare's log extract for a period (JSON with proofs, CSV, log lines, HTML, PDF; signed)", runExportExtract},
		{"audit", "audit report of a period: integrity, timestamps, completeness, retention, SLA, AgID P01/P02", runAudit},
		{"api token", "make a bearer token for an operator, auditor or legal user of the HTTP API (printed once)", runAPIToken},
		{"verify", "check an evidence bundle or a log extract offline against a trust anchor", runVerify},
		{"policy check", "validate a policy file (errors as file:line)", runPolicyCheck},
		{"policy apply", "make a policy file the active one and record the change in the ledger", runPolicyApply},
		{"ledger append", "append events given as JSON lines (one event per line)", runLedgerAppend},
		{"ledger verify", "recompute chain and tree, check every checkpoint", runLedgerVerify},
		{"ledger get", "print an entry in its canonical bytes", runLedgerGet},
		{"ledger proof", "print an entry's inclusion proof to the newest checkpoint", runLedgerProof},
		{"ledger checkpoints", "list checkpoints, and write them as files", runLedgerCheckpoints},
		{"ledger rebuild", "rebuild a lost ledger store from the sealed segments in the archive (--from-archive)", runLedgerRebuild},
		{"archive verify", "re-read the sealed segments from the archive and check them against the ledger", runArchiveVerify},
		{"archive find", "query the sealed segments in the archive (ranges the ledger no longer holds, or a lost ledger), each segment checked first", runArchiveFind},
		{"tsa serve", "serve the built-in RFC 3161 time-stamping authority over HTTP", runTSAServe},
		{"bench", "load, fault and tamper harness: two gestori under load, baselines, SIGKILL/S3/TSA/disk/clock faults, tampering", runBench},
		{"pec inspect", "classify a PEC message, show its daticert and check its signature", runPECInspect},
		{"igpec write", "write the indice dei gestori (LDIF) record of our own gestore", runIGPECWrite},
		{"igpec show", "read an indice dei gestori LDIF file and list its gestori", runIGPECShow},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	os.Exit(dispatch(ctx, e, os.Args[1:]))
}

// dispatch runs the command named by the leading words of args and returns
// the exit status.
func dispatch(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var best *command
	var used int
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(words) <= len(args) && equalWords(words, args[:len(words)]) && len(words) > used {
			c := c
			best, used = &c, len(words)
		}
	}
	if best == nil {
		fmt.Fprintf(e.stderr, "custode: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		usage(e.stderr)
		return 2
	}
	err := best.run(ctx, e, args[used:])
	var ue *usageError
	var fe *failedError
	var se *statusError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "custode %s: %v\n", best.name, err)
		return 2
	case errors.As(err, &fe):
		fmt.Fprintf(e.stderr, "custode %s: %v\n", best.name, err)
		return 1
	case errors.As(err, &se):
		fmt.Fprintf(e.stderr, "custode %s: %v\n", best.name, err)
		return se.code
	default:
		fmt.Fprintf(e.stderr, "custode %s: %v\n", best.name, err)
		return 1
	}
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: custode <command> [flags]\n\ncommands:")
	cs := commands()
	for _, c := range cs {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"custode <command> -h\" for its flags.")
}

// flags returns a flag set for command name that reports errors instead of
// exiting, with the common -data flag.
func flags(e *env, name string, data *string) *flag.FlagSet {
	fs := flag.NewFlagSet("custode "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if data != nil {
		fs.StringVar(data, "data", defaultDataDir, "data directory")
	}
	return fs
}

// parse parses args into fs, turning errors into usage errors.
func parse(fs *flag.FlagSet, args []string, maxPositional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > maxPositional {
		return &usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args()[maxPositional:], " "))}
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
