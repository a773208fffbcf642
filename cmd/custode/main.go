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
	"time"
)

// command is one subcommand: its name (words separated by spaces), a line
// of help, and what it runs.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
	// server marks a command that runs until it is stopped and then stops
	// cleanly (listeners closed, a last checkpoint made), which may take
	// longer than stopGrace: a first signal starts that stop, a second one
	// exits at once.
	server bool
}

// env is what every command gets: where to write, and the logger.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	// live, inside a running server, are its open stores, which the
	// commands run for its admin socket use instead of opening them.
	live *liveStores
	// actor, if set, is who runs the command (the admin socket's peer),
	// the default of -actor.
	actor string
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
		{"init", "create a data directory with a development PKI and configuration", runInit, false},
		{"config check", "validate a configuration (custode.json) and list its listeners, without opening anything", runConfigCheck, false},
		{"serve", "run the gestore on embedded defaults: SMTP and IMAP points, ledger, checkpoints, built-in TSA, sealing", runServe, true},
		{"run", "the same as serve", runServe, true},
		{"demo", "two gestori on loopback exchange messages; print the receipts and ledger entries", runDemo, false},
		{"mailbox add", "create a mailbox (titolare) with a password read from stdin", runMailboxAdd, false},
		{"mailbox list", "list mailboxes with their quota and use", runMailboxList, false},
		{"mailbox passwd", "set a mailbox's password, read from stdin", runMailboxPasswd, false},
		{"mailbox quota", "set a mailbox's quota", runMailboxQuota, false},
		{"domain add", "add a PEC domain whose mailboxes this gestore keeps", runDomainAdd, false},
		{"domain list", "list the gestore's PEC domains", runDomainList, false},
		{"hold place", "put a legal hold on a mailbox, identificativi or a time range (-dry-run to list)", runHoldPlace, false},
		{"hold release", "release a case's legal hold (-dry-run to list)", runHoldRelease, false},
		{"hold list", "list legal holds", runHoldList, false},
		{"quarantine list", "list the messages kept in the virus quarantine (WORM, 30 months)", runQuarantineList, false},
		{"quarantine export", "write a quarantined message, its findings and its retention as a ZIP, for an audit", runQuarantineExport, false},
		{"purge", "delete archivio di sicurezza objects past retention and not held (-dry-run to list)", runPurge, false},
		{"export receipt", "write the evidence bundle of a ricevuta (ZIP: receipt, entry, proof, checkpoint, token, manifest)", runExportReceipt, false},
		{"export extract", "write a titolare's log extract for a period (JSON with proofs, CSV, log lines, HTML, PDF; signed)", runExportExtract, false},
		{"audit", "audit report of a period: integrity, timestamps, completeness, retention, SLA, AgID P01/P02", runAudit, false},
		{"api token", "make a bearer token for an operator, auditor or legal user of the HTTP API (printed once)", runAPIToken, false},
		{"verify", "check an evidence bundle or a log extract offline against a trust anchor", runVerify, false},
		{"policy check", "validate a policy file (errors as file:line)", runPolicyCheck, false},
		{"policy apply", "make a policy file the active one and record the change in the ledger", runPolicyApply, false},
		{"ledger append", "append PEC events given as JSON lines (one event per line), marked as imported", runLedgerAppend, false},
		{"ledger verify", "recompute chain and tree, check every checkpoint", runLedgerVerify, false},
		{"ledger get", "print an entry in its canonical bytes", runLedgerGet, false},
		{"ledger proof", "print an entry's inclusion proof to the newest checkpoint", runLedgerProof, false},
		{"ledger checkpoints", "list checkpoints, and write them as files", runLedgerCheckpoints, false},
		{"ledger rebuild", "rebuild a lost ledger store from the sealed segments in the archive (--from-archive)", runLedgerRebuild, false},
		{"archive verify", "re-read the sealed segments from the archive and check them against the ledger", runArchiveVerify, false},
		{"archive find", "query the sealed segments in the archive (ranges the ledger no longer holds, or a lost ledger), each segment checked first", runArchiveFind, false},
		{"tsa serve", "serve the built-in RFC 3161 time-stamping authority over HTTP", runTSAServe, true},
		{"pec inspect", "classify a PEC message, show its daticert and check its signature", runPECInspect, false},
		{"igpec write", "write the indice dei gestori (LDIF) record of our own gestore", runIGPECWrite, false},
		{"igpec show", "read an indice dei gestori LDIF file and list its gestori", runIGPECShow, false},
	}
}

// stopGrace is how long a command (other than a server) has to return
// after SIGINT or SIGTERM cancelled its context, before the process exits
// anyway: every command ends within 2 s of a signal.
const stopGrace = 1500 * time.Millisecond

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	grace := stopGrace
	if c, _ := lookup(os.Args[1:]); c != nil && c.server {
		grace = 0
	}
	go stopOnSignal(sigs, cancel, e.stderr, grace, os.Exit)
	// An administrative command goes to the running server of its data
	// directory, if one answers on the admin socket.
	if code, ok := runRemote(ctx, e, os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(dispatch(ctx, e, os.Args[1:]))
}

// interruptedError is the cause of a context cancelled by a signal.
type interruptedError struct{ sig os.Signal }

func (e *interruptedError) Error() string { return "interrupted by " + e.sig.String() }

// signalStatus is the exit status of a process ended by sig, as a shell
// reports it: 128 plus the signal's number.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

// stopOnSignal cancels the command's context at the first signal on sigs.
// A second signal exits at once; so does the end of grace, if grace is
// positive and the command has not returned by then.
func stopOnSignal(sigs <-chan os.Signal, cancel context.CancelCauseFunc, stderr io.Writer, grace time.Duration, exit func(int)) {
	sig, ok := <-sigs
	if !ok {
		return
	}
	cancel(&interruptedError{sig})
	var deadline <-chan time.Time
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		deadline = t.C
	} else {
		fmt.Fprintf(stderr, "custode: %v: stopping (signal again to exit at once)\n", sig)
	}
	select {
	case again, ok := <-sigs:
		if !ok {
			return
		}
		fmt.Fprintf(stderr, "custode: %v again: exiting now\n", again)
		exit(signalStatus(again))
	case <-deadline:
		fmt.Fprintf(stderr, "custode: %v: the command did not stop within %v: exiting now\n", sig, grace)
		exit(signalStatus(sig))
	}
}

// lookup returns the command named by the leading words of args and how
// many words name it, or nil.
func lookup(args []string) (*command, int) {
	var best *command
	var used int
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(words) <= len(args) && equalWords(words, args[:len(words)]) && len(words) > used {
			c := c
			best, used = &c, len(words)
		}
	}
	return best, used
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
	best, used := lookup(args)
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
	fmt.Fprintln(w, "\nThe commands that open the data directory's stores (mailbox, hold, purge, quarantine, export,\n"+
		"audit, api token, policy apply, ledger but rebuild, archive verify|find) run inside a running serve\n"+
		"through its admin socket (admin_socket in custode.json, mode 0600) when one answers, else on the\n"+
		"stores directly: the same command, the same output. SIGHUP makes custode serve read its API\n"+
		"tokens and TLS certificate again; tokens, holds, policies and mailboxes need no signal.")
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
