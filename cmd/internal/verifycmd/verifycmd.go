// Package verifycmd is the command that checks an evidence bundle or a log
// extract offline: custode verify and the small custode-verify run it, so
// that both take the same flags and print the same report. It links no
// database (go list -deps names no badger).
package verifycmd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/custode/custode/cmd/internal/input"
	"github.com/custode/custode/ledger/verify/bundle"
	"github.com/custode/custode/pec/pki"
)

// MaxParts is the most parts (ZIP files) a bundle is given in.
const MaxParts = 16

// MaxPartSize is the most bytes the command reads of one part: a little
// more than a bundle's limit, so that the verifier itself names a part
// that is too large.
const MaxPartSize = bundle.MaxDeposit + 1<<20

// The inputs the command reads, each far above what a real one holds.
var (
	// A PEM file of certificates: an anchor, the gestore's certificate.
	inputCertificates = input.Kind{What: "certificate file", Max: 1 << 20}
	// One part of an evidence bundle: what the verifier itself accepts.
	inputBundlePart = input.Kind{What: "bundle part", Max: MaxPartSize}
)

// UsageError is a bad invocation: the command exits with status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// FailedError is a bundle that was read and does not verify, or could not
// be read at all: the command exits with status 1.
type FailedError struct{ Msg string }

func (e *FailedError) Error() string { return e.Msg }

// Verify runs the command named name (for its flag messages) with args:
// the flags -anchor (required), -gestore and -json, then the bundle's parts (a
// file name, or "-" for stdin). It writes the report of every check to
// stdout, then "the bundle verifies" (with -json: one Report document
// instead), and returns nil; or it returns
// flag.ErrHelp (for -h), a *UsageError, a *FailedError after the report
// when a check fails, or the error that stopped it.
func Verify(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var anchor, gestoreCert string
	var asJSON bool
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&anchor, "anchor", "", "PEM file of trusted roots: the gestore's CA and its TSA's (required; the bundle's own copies are not trusted)")
	fs.StringVar(&gestoreCert, "gestore", "", "PEM file of the gestore's signing certificate, as it publishes it: the bundle must be signed by exactly this certificate (optional)")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON document")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err.Error()}
	}
	if fs.NArg() > MaxParts {
		return &UsageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args()[MaxParts:], " "))}
	}
	if fs.NArg() == 0 || anchor == "" {
		return &UsageError{"want -anchor CA.pem and a bundle (all its parts, if it was written in parts)"}
	}
	anchors, err := readCertificates(ctx, stdin, anchor)
	if err != nil {
		return &UsageError{fmt.Sprintf("-anchor: %v", err)}
	}
	var pin *x509.Certificate
	if gestoreCert != "" {
		certs, err := readCertificates(ctx, stdin, gestoreCert)
		if err != nil {
			return &UsageError{fmt.Sprintf("-gestore: %v", err)}
		}
		if len(certs) != 1 {
			return &UsageError{fmt.Sprintf("-gestore: %s holds %d certificates, want the gestore's one", gestoreCert, len(certs))}
		}
		pin = certs[0]
	}
	var parts []bundle.Part
	for _, name := range fs.Args() {
		p, closer, err := input.OpenSized(ctx, stdin, name, inputBundlePart)
		if err != nil {
			return err
		}
		defer closer()
		parts = append(parts, bundle.Part{R: p, Size: p.Size})
	}
	rep, err := bundle.VerifyParts(parts, bundle.Options{Anchors: anchors, Gestore: pin})
	if asJSON {
		return writeJSON(stdout, rep, err)
	}
	if err != nil {
		return &FailedError{err.Error()}
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if !rep.OK() {
		return &FailedError{"the bundle does NOT verify"}
	}
	_, err = fmt.Fprintln(stdout, "the bundle verifies")
	return err
}

// Run runs Verify and returns the command's exit status: 0 when the
// bundle verifies (or for -h), 1 when it does not or an input cannot be
// read, 2 on a bad invocation. Errors go to stderr as "name: error".
func Run(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := Verify(ctx, name, args, stdin, stdout, stderr)
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}

// Report is the JSON document -json prints: the checks of the text
// report, in order, and the verdict. Error is set, and Checks empty, when
// the bundle could not be read at all.
type Report struct {
	OK           bool          `json:"ok"` // "the bundle verifies"
	Error        string        `json:"error,omitempty"`
	Checks       []ReportCheck `json:"checks"`
	Reproduction bool          `json:"reproduction"` // a receipt rebuilt from the log
	Imported     bool          `json:"imported"`     // an entry appended by hand
}

// ReportCheck is one check of a Report.
type ReportCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// writeJSON writes the Report of rep, or of the error that kept the
// bundle from being read, and returns what Verify returns: nil when the
// bundle verifies, a *FailedError otherwise.
func writeJSON(w io.Writer, rep *bundle.Report, verr error) error {
	j := Report{Checks: []ReportCheck{}}
	if verr != nil {
		j.Error = verr.Error()
	} else {
		j.OK, j.Reproduction, j.Imported = rep.OK(), rep.Reproduction, rep.Imported
		for _, c := range rep.Checks {
			j.Checks = append(j.Checks, ReportCheck{Name: c.Name, OK: c.OK, Detail: c.Detail})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(j); err != nil {
		return err
	}
	switch {
	case verr != nil:
		return &FailedError{verr.Error()}
	case !j.OK:
		return &FailedError{"the bundle does NOT verify"}
	}
	return nil
}

// readCertificates reads every certificate of a PEM file ("-" is stdin),
// in order.
func readCertificates(ctx context.Context, stdin io.Reader, name string) ([]*x509.Certificate, error) {
	data, err := input.ReadAll(ctx, stdin, name, inputCertificates)
	if err != nil {
		return nil, err
	}
	return pki.ParseCertificates(data, name)
}
