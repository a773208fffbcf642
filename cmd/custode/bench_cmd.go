package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/custode/custode/cmd/custode/internal/harness"
)

// runBench runs the load, fault and tamper harness (see package harness)
// and writes its results as JSON and Markdown.
func runBench(ctx context.Context, e *env, args []string) error {
	var (
		short, long, keep       bool
		jsonOut, mdOut, dir     string
		phases, src, minio, bin string
		o                       harness.Options
	)
	fs := flags(e, "bench", nil)
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
	fs.StringVar(&bin, "custode", "", "the custode binary the gestori run (default: this one)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: custode bench -short|-long [flags]")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if short == long {
		return &usageError{"want exactly one of -short and -long"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-duration", o.Load}, {"-outage", o.Outage}, {"-fuzztime", o.FuzzTime}} {
		if d.v < 0 {
			return &usageError{fmt.Sprintf("%s: %v is negative", d.name, d.v)}
		}
	}
	if short && o.FuzzTime != 0 {
		return &usageError{"-fuzztime is for the long mode"}
	}
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: the custode binary: %w", err)
		}
		bin = exe
	}
	o.Binary, o.Dir, o.Keep, o.Long, o.Source, o.MinIO, o.Logger = bin, dir, keep, long, src, minio, e.log
	if phases != "" {
		o.Phases = strings.Split(phases, ",")
	}
	if err := o.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	res, err := harness.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	md := res.Markdown()
	fmt.Fprint(e.stdout, md)
	if mdOut != "" {
		if err := os.WriteFile(mdOut, []byte(md), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if !res.Pass {
		return &failedError{"the bench found problems (see Findings)"}
	}
	return nil
}
