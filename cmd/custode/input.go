package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/policies"
)

// inputKind is one kind of input the command line reads, with the most it
// reads of it. Nothing the command line reads (a file argument, a file its
// flags or configuration name, standard input) is read without one: a
// larger input, or one that never ends (/dev/zero, a FIFO), is refused
// with an *inputTooLargeError naming it and the limit.
type inputKind struct {
	what string // what the input is, for errors
	max  int64  // bytes
}

// The limits, each far above what a real input of its kind holds.
var (
	// A PEC message: what pec.Parse accepts (PEC caps a message at 30 MB).
	inputMessage = inputKind{"message", pec.DefaultMaxMessageSize}
	// A PEM file of certificates: an anchor, a CA, a gestore's chain.
	inputCertificates = inputKind{"certificate file", 1 << 20}
	// A PEM file of trusted roots, such as the system's bundle (about
	// 0.2 MiB on Debian).
	inputRoots = inputKind{"file of trusted roots", 8 << 20}
	// The indice dei gestori in LDIF: what igpec.ParseLDIF accepts.
	inputIndex = inputKind{"indice dei gestori (LDIF)", igpec.MaxLDIFSize}
	// A policy file.
	inputPolicy = inputKind{"policy file", policies.MaxFileSize}
	// The data directory's configuration.
	inputConfig = inputKind{"configuration", 1 << 20}
	// Events for ledger append: JSON lines.
	inputEvents = inputKind{"event file", 256 << 20}
	// One part of an evidence bundle: what the verifier itself accepts.
	inputBundlePart = inputKind{"bundle part", export.MaxBundleSize + 1<<20}
	// The API's token list: one line per user.
	inputTokens = inputKind{"token file", 16 << 20}
	// A password, on the first line of standard input.
	inputPassword = inputKind{"password line", 4 << 10}
	// A small text file: a test clock offset.
	inputSmall = inputKind{"file", 1 << 10}
)

// inputTooLargeError reports an input longer than its kind allows.
type inputTooLargeError struct {
	name string
	kind inputKind
}

func (e *inputTooLargeError) Error() string {
	return fmt.Sprintf("%s: %s larger than %s: refused", e.name, e.kind.what, byteCount(e.kind.max))
}

func byteCount(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// boundedReader reads at most kind.max bytes of r, named name: one byte
// more fails with *inputTooLargeError. It stops with ctx's error once ctx
// is done.
type boundedReader struct {
	ctx  context.Context
	r    io.Reader // limited to max+1 bytes
	name string
	kind inputKind
	n    int64 // read so far
}

func newBoundedReader(ctx context.Context, r io.Reader, name string, kind inputKind) *boundedReader {
	return &boundedReader{ctx: ctx, r: io.LimitReader(r, kind.max+1), name: name, kind: kind}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", b.name, context.Cause(b.ctx))
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.kind.max {
		return 0, &inputTooLargeError{b.name, b.kind}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if cerr := b.ctx.Err(); cerr != nil {
			err = context.Cause(b.ctx)
		}
		return n, fmt.Errorf("%s: %w", b.name, err)
	}
	return n, err
}

// openInput opens the file name ("-" is stdin) for reading at most kind's
// limit. A read blocked on a FIFO or a pipe ends when ctx is done. The
// caller closes what it returns.
func openInput(ctx context.Context, e *env, name string, kind inputKind) (io.ReadCloser, error) {
	if name == "-" {
		return struct {
			io.Reader
			io.Closer
		}{newBoundedReader(ctx, e.stdin, "standard input", kind), io.NopCloser(nil)}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	// Files the runtime polls (FIFOs, pipes, sockets) take a deadline:
	// that unblocks a read when ctx is done. Regular files never block.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	return &inputFile{boundedReader: newBoundedReader(ctx, f, name, kind), f: f, stop: stop}, nil
}

type inputFile struct {
	*boundedReader
	f    *os.File
	stop func() bool
}

func (i *inputFile) Close() error {
	i.stop()
	return i.f.Close()
}

// readInput reads all of the file name ("-" is stdin), at most kind's
// limit.
func readInput(ctx context.Context, e *env, name string, kind inputKind) ([]byte, error) {
	r, err := openInput(ctx, e, name, kind)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
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
