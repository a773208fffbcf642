package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"

	"github.com/custode/custode/cmd/internal/input"
	"github.com/custode/custode/cmd/internal/verifycmd"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/policies"
)

// InputKind is one kind of input the command line reads, with the most it
// reads of it (package input): nothing is read without one.
type InputKind = input.Kind

// The limits, each far above what a real input of its kind holds.
var (
	// A PEC message: what pec.Parse accepts (PEC caps a message at 30 MB).
	InputMessage = InputKind{What: "message", Max: pec.DefaultMaxMessageSize}
	// A PEM file of certificates: an anchor, a CA, a gestore's chain.
	InputCertificates = InputKind{What: "certificate file", Max: 1 << 20}
	// A PEM file of trusted roots, such as the system's bundle (about
	// 0.2 MiB on Debian).
	InputRoots = InputKind{What: "file of trusted roots", Max: 8 << 20}
	// The indice dei gestori in LDIF: what igpec.ParseLDIF accepts.
	InputIndex = InputKind{What: "indice dei gestori (LDIF)", Max: igpec.MaxLDIFSize}
	// A policy file.
	InputPolicy = InputKind{What: "policy file", Max: policies.MaxFileSize}
	// The data directory's configuration.
	InputConfig = InputKind{What: "configuration", Max: 1 << 20}
	// Events for ledger append: JSON lines.
	InputEvents = InputKind{What: "event file", Max: 256 << 20}
	// One part of an evidence bundle: what the verifier itself accepts
	// (custode verify reads it through package verifycmd).
	InputBundlePart = InputKind{What: "bundle part", Max: verifycmd.MaxPartSize}
	// The API's token list: one line per user.
	InputTokens = InputKind{What: "token file", Max: 16 << 20}
	// A password, on the first line of standard input.
	InputPassword = InputKind{What: "password line", Max: 4 << 10}
	// A small text file: a test clock offset.
	InputSmall = InputKind{What: "file", Max: 1 << 10}
)

// ByteCount writes a size for people (input.ByteCount).
func ByteCount(n int64) string { return input.ByteCount(n) }

// stdin is the command's standard input; nil for none.
func stdin(e *Env) io.Reader {
	if e == nil {
		return nil
	}
	return e.Stdin
}

// OpenInput opens the file name ("-" is stdin) for reading at most kind's
// limit (input.Open). The caller closes what it returns.
func OpenInput(ctx context.Context, e *Env, name string, kind InputKind) (io.ReadCloser, error) {
	return input.Open(ctx, stdin(e), name, kind)
}

// ReadInput reads all of the file name ("-" is stdin), at most kind's
// limit.
func ReadInput(ctx context.Context, e *Env, name string, kind InputKind) ([]byte, error) {
	return input.ReadAll(ctx, stdin(e), name, kind)
}

// ReadCertificates reads every certificate of a PEM file, in order, at
// most kind's limit.
func ReadCertificates(ctx context.Context, e *Env, name string, kind InputKind) ([]*x509.Certificate, error) {
	data, err := ReadInput(ctx, e, name, kind)
	if err != nil {
		return nil, err
	}
	return pki.ParseCertificates(data, name)
}

// ReadIndex reads an indice dei gestori in LDIF, at most InputIndex.
func ReadIndex(ctx context.Context, e *Env, name string) (*igpec.Index, error) {
	r, err := OpenInput(ctx, e, name, InputIndex)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ix, err := igpec.ParseLDIF(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ix, nil
}
