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

	"github.com/custode/custode/cmd/internal/admin"
	"github.com/custode/custode/cmd/internal/apicmd"
	"github.com/custode/custode/cmd/internal/archivecmd"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/democmd"
	"github.com/custode/custode/cmd/internal/exportcmd"
	"github.com/custode/custode/cmd/internal/holdcmd"
	"github.com/custode/custode/cmd/internal/ledgercmd"
	"github.com/custode/custode/cmd/internal/mailboxcmd"
	"github.com/custode/custode/cmd/internal/peccmd"
	"github.com/custode/custode/cmd/internal/policycmd"
	"github.com/custode/custode/cmd/internal/quarantinecmd"
)

// commands is the command table: the name, help line and function of
// every command.
func commands() []cli.Command {
	return []cli.Command{
		{Name: "init", Summary: "create a data directory with a development PKI and configuration", Run: config.RunInit},
		{Name: "config check", Summary: "validate a configuration (custode.json) and list its listeners, without opening anything", Run: config.RunCheck},
		{Name: "serve", Summary: "run the gestore on embedded defaults: SMTP and IMAP points, ledger, checkpoints, built-in TSA, sealing", Run: runServe, Server: true},
		{Name: "run", Summary: "the same as serve", Run: runServe, Server: true},
		{Name: "demo", Summary: "two gestori on loopback exchange messages; print the receipts and ledger entries", Run: democmd.Run(serveGestore)},
		{Name: "mailbox add", Summary: "create a mailbox (titolare) with a password read from stdin", Run: mailboxcmd.RunAdd},
		{Name: "mailbox list", Summary: "list mailboxes with their quota and use", Run: mailboxcmd.RunList},
		{Name: "mailbox passwd", Summary: "set a mailbox's password, read from stdin", Run: mailboxcmd.RunPasswd},
		{Name: "mailbox quota", Summary: "set a mailbox's quota", Run: mailboxcmd.RunQuota},
		{Name: "domain add", Summary: "add a PEC domain whose mailboxes this gestore keeps", Run: mailboxcmd.RunDomainAdd},
		{Name: "domain list", Summary: "list the gestore's PEC domains", Run: mailboxcmd.RunDomainList},
		{Name: "hold place", Summary: "put a legal hold on a mailbox, identificativi or a time range (-dry-run to list)", Run: holdcmd.RunPlace},
		{Name: "hold release", Summary: "release a case's legal hold (-dry-run to list)", Run: holdcmd.RunRelease},
		{Name: "hold list", Summary: "list legal holds", Run: holdcmd.RunList},
		{Name: "quarantine list", Summary: "list the messages kept in the virus quarantine (WORM, 30 months)", Run: quarantinecmd.RunList},
		{Name: "quarantine export", Summary: "write a quarantined message, its findings and its retention as a ZIP, for an audit", Run: quarantinecmd.RunExport},
		{Name: "purge", Summary: "delete archivio di sicurezza objects past retention and not held (-dry-run to list)", Run: holdcmd.RunPurge},
		{Name: "export receipt", Summary: "write the evidence bundle of a ricevuta (ZIP: receipt, entry, proof, checkpoint, token, manifest)", Run: exportcmd.RunReceipt},
		{Name: "export extract", Summary: "write a titolare's log extract for a period (JSON with proofs, CSV, log lines, HTML, PDF; signed)", Run: exportcmd.RunExtract},
		{Name: "audit", Summary: "audit report of a period: integrity, timestamps, completeness, retention, SLA, AgID P01/P02", Run: exportcmd.RunAudit},
		{Name: "api token", Summary: "make a bearer token for an operator, auditor or legal user of the HTTP API (printed once)", Run: apicmd.RunToken},
		{Name: "verify", Summary: "check an evidence bundle or a log extract offline against a trust anchor", Run: runVerify},
		{Name: "policy check", Summary: "validate a policy file (errors as file:line)", Run: policycmd.RunCheck},
		{Name: "policy apply", Summary: "make a policy file the active one and record the change in the ledger", Run: policycmd.RunApply},
		{Name: "ledger append", Summary: "append PEC events given as JSON lines (one event per line), marked as imported", Run: ledgercmd.RunAppend},
		{Name: "ledger verify", Summary: "recompute chain and tree, check every checkpoint", Run: ledgercmd.RunVerify},
		{Name: "ledger get", Summary: "print an entry in its canonical bytes", Run: ledgercmd.RunGet},
		{Name: "ledger proof", Summary: "print an entry's inclusion proof to the newest checkpoint", Run: ledgercmd.RunProof},
		{Name: "ledger checkpoints", Summary: "list checkpoints, and write them as files", Run: ledgercmd.RunCheckpoints},
		{Name: "ledger rebuild", Summary: "rebuild a lost ledger store from the sealed segments in the archive (--from-archive)", Run: archivecmd.RunLedgerRebuild},
		{Name: "archive verify", Summary: "re-read the sealed segments from the archive and check them against the ledger", Run: archivecmd.RunVerify},
		{Name: "archive find", Summary: "query the sealed segments in the archive (ranges the ledger no longer holds, or a lost ledger), each segment checked first", Run: archivecmd.RunFind},
		{Name: "tsa serve", Summary: "serve the built-in RFC 3161 time-stamping authority over HTTP", Run: runTSAServe, Server: true},
		{Name: "pec inspect", Summary: "classify a PEC message, show its daticert and check its signature", Run: peccmd.RunInspect},
		{Name: "igpec write", Summary: "write the indice dei gestori (LDIF) record of our own gestore", Run: peccmd.RunIGPECWrite},
		{Name: "igpec show", Summary: "read an indice dei gestori LDIF file and list its gestori", Run: peccmd.RunIGPECShow},
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
	e := &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	grace := stopGrace
	if c, _ := lookup(os.Args[1:]); c != nil && c.Server {
		grace = 0
	}
	go stopOnSignal(sigs, cancel, e.Stderr, grace, os.Exit)
	// An administrative command goes to the running server of its data
	// directory, if one answers on the admin socket.
	if code, ok := admin.RunRemote(ctx, e, adminCommands(), os.Args[1:]); ok {
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

// adminCommands is the command table as the admin socket sees it.
func adminCommands() admin.Commands { return admin.Commands{Lookup: lookupName, Dispatch: dispatch} }

// lookupName returns the name of the command named by the leading words of
// args and how many words name it, or "".
func lookupName(args []string) (string, int) {
	c, used := lookup(args)
	if c == nil {
		return "", 0
	}
	return c.Name, used
}

// lookup returns the command named by the leading words of args and how
// many words name it, or nil.
func lookup(args []string) (*cli.Command, int) {
	var best *cli.Command
	var used int
	for _, c := range commands() {
		words := strings.Fields(c.Name)
		if len(words) <= len(args) && equalWords(words, args[:len(words)]) && len(words) > used {
			c := c
			best, used = &c, len(words)
		}
	}
	return best, used
}

// dispatch runs the command named by the leading words of args and returns
// the exit status.
func dispatch(ctx context.Context, e *cli.Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	best, used := lookup(args)
	if best == nil {
		fmt.Fprintf(e.Stderr, "custode: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		usage(e.Stderr)
		return 2
	}
	err := best.Run(ctx, e, args[used:])
	var ue *cli.UsageError
	var fe *cli.FailedError
	var se *cli.StatusError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.Stderr, "custode %s: %v\n", best.Name, err)
		return 2
	case errors.As(err, &fe):
		fmt.Fprintf(e.Stderr, "custode %s: %v\n", best.Name, err)
		return 1
	case errors.As(err, &se):
		fmt.Fprintf(e.Stderr, "custode %s: %v\n", best.Name, err)
		return se.Code
	default:
		fmt.Fprintf(e.Stderr, "custode %s: %v\n", best.Name, err)
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
		fmt.Fprintf(w, "  %-20s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nThe commands that open the data directory's stores (mailbox, hold, purge, quarantine, export,\n"+
		"audit, api token, policy apply, ledger but rebuild, archive verify|find) run inside a running serve\n"+
		"through its admin socket (admin_socket in custode.json, mode 0600) when one answers, else on the\n"+
		"stores directly: the same command, the same output. SIGHUP makes custode serve read its API\n"+
		"tokens and TLS certificate again; tokens, holds, policies and mailboxes need no signal.")
	fmt.Fprintln(w, "\nRun \"custode <command> -h\" for its flags.")
}
