package main

import (
	"context"
	"crypto/x509"
	"io"

	"github.com/custode/custode/cmd/internal/input"
	"github.com/custode/custode/cmd/internal/verifycmd"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/policies"
)

// inputKind is one kind of input the command line reads, with the most it
// reads of it (package input): nothing is read without one.
type inputKind = input.Kind

// The limits, each far above what a real input of its kind holds.
var (
	// A PEC message: what pec.Parse accepts (PEC caps a message at 30 MB).
	inputMessage = inputKind{What: "message", Max: pec.DefaultMaxMessageSize}
	// A PEM file of certificates: an anchor, a CA, a gestore's chain.
	inputCertificates = inputKind{What: "certificate file", Max: 1 << 20}
	// A PEM file of trusted roots, such as the system's bundle (about
	// 0.2 MiB on Debian).
	inputRoots = inputKind{What: "file of trusted roots", Max: 8 << 20}
	// The indice dei gestori in LDIF: what igpec.ParseLDIF accepts.
	inputIndex = inputKind{What: "indice dei gestori (LDIF)", Max: igpec.MaxLDIFSize}
	// A policy file.
	inputPolicy = inputKind{What: "policy file", Max: policies.MaxFileSize}
	// The data directory's configuration.
	inputConfig = inputKind{What: "configuration", Max: 1 << 20}
	// Events for ledger append: JSON lines.
	inputEvents = inputKind{What: "event file", Max: 256 << 20}
	// One part of an evidence bundle: what the verifier itself accepts
	// (custode verify reads it through package verifycmd).
	inputBundlePart = inputKind{What: "bundle part", Max: verifycmd.MaxPartSize}
	// The API's token list: one line per user.
	inputTokens = inputKind{What: "token file", Max: 16 << 20}
	// A password, on the first line of standard input.
	inputPassword = inputKind{What: "password line", Max: 4 << 10}
	// A small text file: a test clock offset.
	inputSmall = inputKind{What: "file", Max: 1 << 10}
)

// byteCount writes a size for people (input.ByteCount).
func byteCount(n int64) string { return input.ByteCount(n) }

// stdin is the command's standard input; nil for none.
func stdin(e *env) io.Reader {
	if e == nil {
		return nil
	}
	return e.stdin
}

// openInput opens the file name ("-" is stdin) for reading at most kind's
// limit (input.Open). The caller closes what it returns.
func openInput(ctx context.Context, e *env, name string, kind inputKind) (io.ReadCloser, error) {
	return input.Open(ctx, stdin(e), name, kind)
}

// readInput reads all of the file name ("-" is stdin), at most kind's
// limit.
func readInput(ctx context.Context, e *env, name string, kind inputKind) ([]byte, error) {
	return input.ReadAll(ctx, stdin(e), name, kind)
}

// readCertificates reads every certificate of a PEM file, in order, at
// most kind's limit.
func readCertificates(ctx context.Context, e *env, name string, kind inputKind) ([]*x509.Certificate, error) {
	data, err := readInput(ctx, e, name, kind)
	if err != nil {
		return nil, err
	}
	return pki.ParseCertificates(data, name)
}
