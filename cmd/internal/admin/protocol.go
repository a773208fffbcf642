// Package admin is custode's administration socket: the protocol, the
// client that sends a command to a running server, the server that runs it
// over the server's open stores, and what a server reloads (API tokens, TLS
// certificate) after a command or on SIGHUP.
package admin

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The administration socket: custode serve listens on a unix socket (mode
// 0600, each peer's credentials checked) and runs, for each connection,
// one administrative command over its own open stores; the custode command
// sends that command there when a server answers, and otherwise runs it
// on the stores itself. Either way the same function runs, so the output
// is the same.
//
// The protocol is a sequence of frames, each a 4-byte big-endian length
// followed by that many bytes of JSON: one Request from the client,
// then Reply frames from the server, the last one with Done set.

// Version is the protocol's version; a server refuses any other.
const Version = 1

// Bounds of the protocol: nothing larger is read.
const (
	// MaxStdin is the most of its standard input a client forwards
	// (the events of a ledger append above it must be run with the server
	// stopped, or split).
	MaxStdin = 64 << 20
	// MaxRequest bounds the request frame: stdin (base64) and args.
	MaxRequest = MaxStdin/3*4 + 1<<20
	// MaxReply bounds a reply frame; output is sent in chunks.
	MaxReply = 1 << 20
	// adminChunk is the most output bytes one reply frame carries.
	adminChunk = 256 << 10
)

// Request is what a client asks: a command line, its standard input.
type Request struct {
	Version int      `json:"version"`
	Args    []string `json:"args"`
	Stdin   []byte   `json:"stdin,omitempty"`
}

// Reply is one frame of the answer: output, or the exit status.
type Reply struct {
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	Done   bool   `json:"done,omitempty"`
	Exit   int    `json:"exit"`
}

// WriteFrame writes v as one frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(b)))
	if _, err := w.Write(append(h[:], b...)); err != nil {
		return fmt.Errorf("admin: write: %w", err)
	}
	return nil
}

// ReadFrame reads one frame of at most max bytes into v.
func ReadFrame(r io.Reader, max int, v any) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("admin: read: %w", err)
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(max) {
		return fmt.Errorf("admin: a frame of %d bytes, more than the %d allowed", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("admin: read: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("admin: bad frame: %w", err)
	}
	return nil
}

// frameWriter sends what is written to it as reply frames on one stream.
type frameWriter struct {
	w      *lockedWriter
	stderr bool
}

// Write sends p in reply frames of at most adminChunk bytes.
func (f frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += adminChunk {
		chunk := p[off:min(len(p), off+adminChunk)]
		r := Reply{Stdout: chunk}
		if f.stderr {
			r = Reply{Stderr: chunk}
		}
		if err := f.w.frame(r); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// RemoteCommands are the commands that open the data directory's stores,
// and so go through the running server's admin socket when one answers.
// Every other command opens no store (policy check, verify, pec inspect),
// or makes no sense inside a running server (serve, init, demo, ledger
// rebuild), and runs in the calling process.
var RemoteCommands = map[string]bool{
	"mailbox add": true, "mailbox list": true, "mailbox passwd": true, "mailbox quota": true,
	"hold place": true, "hold release": true, "hold list": true,
	"quarantine list": true, "quarantine export": true, "purge": true,
	"export receipt": true, "export extract": true, "audit": true,
	"api token": true, "policy apply": true,
	"ledger append": true, "ledger verify": true, "ledger get": true, "ledger proof": true, "ledger checkpoints": true,
	"archive verify": true, "archive find": true,
}

// ErrNoServer means no server answered on the admin socket.
var ErrNoServer = errors.New("admin: no server answers")
