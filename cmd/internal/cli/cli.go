// Package cli is what every custode command shares: the command type, its
// environment (standard streams, logger, the running server's stores), the
// errors that choose its exit status, flag parsing and bounded input.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"strings"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailaddr"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/retention"
)

// Command is one subcommand: its name (words separated by spaces), a line
// of help, and what it runs.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, env *Env, args []string) error
	// Server marks a command that runs until it is stopped and then stops
	// cleanly (listeners closed, a last checkpoint made), which may take
	// longer than the grace a command has after a signal: a first signal starts that stop, a second one
	// exits at once.
	Server bool
}

// Env is what every command gets: where to write, and the logger.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Log            *slog.Logger
	// Live, inside a running server, are its open stores, which the
	// commands run for its admin socket use instead of opening them.
	Live *Live
	// Actor, if set, is who runs the command (the admin socket's peer),
	// the default of -actor.
	Actor string
}

// UsageError is a bad invocation: it exits with status 2.
type UsageError struct{ Msg string }

// Error returns the message.
func (e *UsageError) Error() string { return e.Msg }

// FailedError is a check that ran and found problems: it exits with
// status 1 after the command has printed its report.
type FailedError struct{ Msg string }

// Error returns the message.
func (e *FailedError) Error() string { return e.Msg }

// StatusError is a check that ran and exits with a status of its own
// (custode pec inspect: 3 untrusted, 4 unsigned).
type StatusError struct {
	Code int
	Msg  string
}

// Error returns the message.
func (e *StatusError) Error() string { return e.Msg }

// Flags returns a flag set for command name that reports errors instead of
// exiting, with the common -data flag.
func Flags(e *Env, name string, data *string) *flag.FlagSet {
	fs := flag.NewFlagSet("custode "+name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	if data != nil {
		fs.StringVar(data, "data", DefaultDataDir, "data directory")
	}
	return fs
}

// Parse parses args into fs, turning errors into usage errors.
func Parse(fs *flag.FlagSet, args []string, maxPositional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err.Error()}
	}
	if fs.NArg() > maxPositional {
		return &UsageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args()[maxPositional:], " "))}
	}
	return nil
}

// DiscardLogger returns a logger that writes nothing.
func DiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Live are the stores a running server has open, lent to the
// commands it runs for its admin socket: they never close them.
type Live struct {
	Dir       string // the server's data directory, absolute
	Ledger    *ledger.Ledger
	Mailboxes *mailstore.Store
	// Holds is the one registry the server's commands change holds
	// through, so that two of them at once never lose an update.
	Holds *retention.Registry
	// Changed, if set, is called after a command ran, so that the server
	// takes up at once what it changed (tokens, policies, holds).
	Changed func()
}

// CloseLedger closes l unless it is the running server's, lent to the
// command.
func CloseLedger(e *Env, l *ledger.Ledger) error {
	if e != nil && e.Live != nil && l == e.Live.Ledger {
		return nil
	}
	return l.Close()
}

// CloseMailboxes closes st unless it is the running server's.
func CloseMailboxes(e *Env, st *mailstore.Store) error {
	if e != nil && e.Live != nil && st == e.Live.Mailboxes {
		return nil
	}
	return st.Close()
}

// WriteJSON writes v to standard output as one indented JSON document.
func WriteJSON(e *Env, v any) error {
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// DefaultDataDir is the data directory of every command's -data flag when
// none is given.
const DefaultDataDir = "custode-data"

// MailboxArg reads a mailbox address argument in its canonical form
// (package mailaddr: ASCII, lower case, no trailing dot, no quoted local
// part), or gives a usage error saying why it has none.
func MailboxArg(a string) (string, error) {
	c, err := mailaddr.Canonical(a)
	if err != nil {
		return "", &UsageError{Msg: err.Error()}
	}
	return c, nil
}

// DefaultActor is who runs the command: the user of the process or, for a
// command run through the admin socket, the user of the peer that asked.
func DefaultActor(e *Env) string {
	if e != nil && e.Actor != "" {
		return e.Actor
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// ParseTimeFlag reads the value v of the time flag -name: a day (that day
// in Europe/Rome) or an RFC 3339 time; "" is the zero time.
func ParseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := export.ParseTimeOrDay(v)
	if err != nil {
		return time.Time{}, &UsageError{Msg: fmt.Sprintf("-%s: want a date (2026-11-23, that day in Europe/Rome) or an RFC 3339 time, got %q", name, v)}
	}
	return t, nil
}
