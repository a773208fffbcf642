// Command custode-bench is the load, fault and tamper harness of Custode
// (see package harness): two gestori, each a custode serve process, under
// SMTP load with baselines measured in the same run, then SIGKILL, S3, TSA,
// disk and clock faults, then tampering with what they wrote.
//
// Usage:
//
//	custode-bench -short|-long [flags]
//
// It runs the custode binary given by -custode, by default the one named
// custode beside this executable (scripts/bench.sh builds both). The
// production binary carries none of this.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/custode/custode/cmd/custode-bench/internal/harness"
)

func main() {
	if harness.HoldMain() { // a child of the hostile phase
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, logger))
}

// usageError is a bad invocation: it exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// run parses args, runs the harness and writes its results; it returns the
// exit status: 0 pass, 1 the bench found problems or could not run, 2 bad
// arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) int {
	res, err := bench(ctx, args, stdout, stderr, logger)
	var ue *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "custode-bench: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "custode-bench: %v\n", err)
		return 1
	case !res.Pass:
		fmt.Fprintln(stderr, "custode-bench: the bench found problems (see Findings)")
		return 1
	}
	return 0
}

func bench(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) (*harness.Results, error) {
	var (
		short, long, keep       bool
		jsonOut, mdOut, dir     string
		phases, src, minio, bin string
		o                       harness.Options
	)
	fs := flag.NewFlagSet("custode-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&short, "short", false, "the short mode: about 5 minutes on 2 cores, no fuzzing (what the integration test runs)")
	fs.BoolVar(&long, "long", false, "the long mode: longer load, 20 kills, 30 s outages, 200 flips, every fuzz target for -fuzztime")
	fs.StringVar(&jsonOut, "json", "", "write the results as JSON to this file")
	fs.StringVar(&mdOut, "md", "", "write the results as Markdown to this file (they are printed too)")
	fs.StringVar(&dir, "dir", "", "work directory (default: a temporary one, removed at the end unless -keep)")
	fs.BoolVar(&keep, "keep", false, "keep the work directory: data directories, logs, audit reports")
	fs.StringVar(&phases, "phases", "", "comma-separated phases to run (default all of the mode's): "+strings.Join(harness.Phases, ","))
	fs.IntVar(&o.Clients, "clients", 0, "concurrent SMTP clients (default 6 short, 16 long)")
	fs.DurationVar(&o.Load, "duration", 0, "how long the measured load phase submits (default 15s short, 1m long)")
	fs.IntVar(&o.Kills, "kills", 0, "SIGKILLs of the gestore under load (default 5 short, 20 long)")
	fs.DurationVar(&o.Outage, "outage", 0, "how long the S3, TSA, disk and clock faults last (default 6s short, 30s long)")
	fs.IntVar(&o.Flips, "flips", 0, "byte flips in the ledger and in evidence bundles, each (default 20 short, 200 long)")
	fs.IntVar(&o.SegmentFlips, "segment-flips", 0, "byte flips in sealed segments, one segment each (default 3 short, 20 long)")
	fs.DurationVar(&o.FuzzTime, "fuzztime", 0, "time per fuzz target in the long mode (default 30s)")
	fs.StringVar(&src, "src", "", "the module's source tree, for the fuzz targets (default: the current directory's module)")
	fs.StringVar(&minio, "minio", "", "MinIO server binary (default $CUSTODE_TEST_MINIO_BIN or ~/.cache/custode/bin/minio)")
	fs.StringVar(&bin, "custode", "", "the custode binary the gestori run (default: custode beside this executable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: custode-bench -short|-long [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if short == long {
		return nil, &usageError{"want exactly one of -short and -long"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-duration", o.Load}, {"-outage", o.Outage}, {"-fuzztime", o.FuzzTime}} {
		if d.v < 0 {
			return nil, &usageError{fmt.Sprintf("%s: %v is negative", d.name, d.v)}
		}
	}
	if short && o.FuzzTime != 0 {
		return nil, &usageError{"-fuzztime is for the long mode"}
	}
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("the custode binary: %w", err)
		}
		bin = filepath.Join(filepath.Dir(exe), "custode")
		if _, err := os.Stat(bin); err != nil {
			return nil, &usageError{fmt.Sprintf("no custode binary beside this one (%v): build it with go build -o %s ./cmd/custode, or give -custode", err, bin)}
		}
	}
	o.Binary, o.Dir, o.Keep, o.Long, o.Source, o.MinIO, o.Logger = bin, dir, keep, long, src, minio, logger
	if phases != "" {
		o.Phases = strings.Split(phases, ",")
	}
	if err := o.Validate(); err != nil {
		return nil, &usageError{err.Error()}
	}
	res, err := harness.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	md := res.Markdown()
	fmt.Fprint(stdout, md)
	if mdOut != "" {
		if err := os.WriteFile(mdOut, []byte(md), 0o644); err != nil {
			return nil, err
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return res, nil
}
