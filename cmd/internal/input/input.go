// Package input reads what a command is given (a file argument, a file
// its flags or configuration name, standard input) never without a limit:
// a larger input, or one that never ends (/dev/zero, a FIFO), is refused
// with a *TooLargeError naming it and the limit, and a read blocked on a
// pipe ends when the context is done.
package input

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Kind is one kind of input, with the most that is read of it.
type Kind struct {
	What string // what the input is, for errors
	Max  int64  // bytes
}

// TooLargeError reports an input longer than its kind allows.
type TooLargeError struct {
	Name string
	Kind Kind
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %s larger than %s: refused", e.Name, e.Kind.What, ByteCount(e.Kind.Max))
}

// ByteCount writes n as people read it: in GiB or MiB when it is a whole
// number of them, else in bytes.
func ByteCount(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Reader reads at most Kind.Max bytes: one byte more fails with
// *TooLargeError. It stops with ctx's cause once ctx is done.
type Reader struct {
	ctx  context.Context
	r    io.Reader // limited to max+1 bytes
	name string
	kind Kind
	n    int64 // read so far
}

// NewReader returns a Reader of r, named name in errors.
func NewReader(ctx context.Context, r io.Reader, name string, kind Kind) *Reader {
	return &Reader{ctx: ctx, r: io.LimitReader(r, kind.Max+1), name: name, kind: kind}
}

func (b *Reader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", b.name, context.Cause(b.ctx))
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.kind.Max {
		return 0, &TooLargeError{b.name, b.kind}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if cerr := b.ctx.Err(); cerr != nil {
			err = context.Cause(b.ctx)
		}
		return n, fmt.Errorf("%s: %w", b.name, err)
	}
	return n, err
}

// Open opens the file name for reading at most kind's limit; "-" is stdin.
// A read blocked on a FIFO or a pipe ends when ctx is done. The caller
// closes what it returns.
func Open(ctx context.Context, stdin io.Reader, name string, kind Kind) (io.ReadCloser, error) {
	if name == "-" {
		if stdin == nil {
			return nil, errors.New("input: no standard input")
		}
		return struct {
			io.Reader
			io.Closer
		}{NewReader(ctx, stdin, "standard input", kind), io.NopCloser(nil)}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	// Files the runtime polls (FIFOs, pipes, sockets) take a deadline:
	// that unblocks a read when ctx is done. Regular files never block.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	return &file{Reader: NewReader(ctx, f, name, kind), f: f, stop: stop}, nil
}

type file struct {
	*Reader
	f    *os.File
	stop func() bool
}

func (i *file) Close() error {
	i.stop()
	return i.f.Close()
}

// ReadAll reads all of the file name ("-" is stdin), at most kind's limit.
func ReadAll(ctx context.Context, stdin io.Reader, name string, kind Kind) ([]byte, error) {
	r, err := Open(ctx, stdin, name, kind)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Sized is an input that can be read at any offset, such as a ZIP file.
type Sized struct {
	io.ReaderAt
	Size int64
}

// OpenSized opens the file name for random access within kind's limit: a
// regular file is read in place once its size is checked; anything else (a
// pipe, a FIFO, a device, "-" for stdin) is read into memory through the
// limit. The caller calls the returned close function.
func OpenSized(ctx context.Context, stdin io.Reader, name string, kind Kind) (Sized, func(), error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return Sized{}, nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return Sized{}, nil, err
		}
		if st.Mode().IsRegular() {
			if st.Size() > kind.Max {
				f.Close()
				return Sized{}, nil, &TooLargeError{name, kind}
			}
			return Sized{f, st.Size()}, func() { f.Close() }, nil
		}
		f.Close()
	}
	b, err := ReadAll(ctx, stdin, name, kind)
	if err != nil {
		return Sized{}, nil, err
	}
	return Sized{bytes.NewReader(b), int64(len(b))}, func() {}, nil
}
