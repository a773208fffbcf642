package clamd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

const (
	// DefaultTimeout bounds a call when Client.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxSize is the largest scan when Client.MaxSize is zero: 25 MB,
	// the default StreamMaxLength of clamd.
	DefaultMaxSize = 25 << 20

	// chunkSize is the size of the zINSTREAM chunks sent.
	chunkSize = 64 << 10
	// maxAnswer bounds what is read of an answer; clamd's are one short line.
	maxAnswer = 4096
)

// ErrTooLarge is wrapped by the error of a Scan whose data is larger than
// Client.MaxSize, or than what clamd accepts (its StreamMaxLength).
var ErrTooLarge = errors.New("data too large to scan")

// A Client reaches one clamd. Its zero value is not usable: Network and
// Address are required. A Client is safe for concurrent use: each call opens
// its own connection.
type Client struct {
	// Network is "unix" (Address is the path of clamd's LocalSocket) or
	// "tcp", "tcp4", "tcp6" (Address is host:port of its TCPSocket).
	Network string
	Address string
	// Timeout bounds each call, connecting included: a clamd that does not
	// answer within it makes the call fail. Zero or less means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxSize is the largest data Scan sends, in bytes; larger data is
	// refused without contacting clamd. Zero or less means DefaultMaxSize.
	// It should not exceed clamd's StreamMaxLength, or clamd refuses the
	// scan itself (also an error wrapping ErrTooLarge).
	MaxSize int64
}

// Result is the outcome of a completed scan.
type Result struct {
	// Infected is true when clamd found a signature in the data.
	Infected bool
	// Virus is the name of the signature found, as clamd reports it (for
	// example "Eicar-Test-Signature.UNOFFICIAL"), without the hash and size
	// that clamd's ExtendedDetectionInfo appends; empty when not Infected.
	Virus string
}

// Scan sends data to clamd with zINSTREAM and returns its verdict. Any
// failure is an error, never a clean Result: data larger than MaxSize (an
// error wrapping ErrTooLarge, clamd not contacted), clamd unreachable,
// clamd answering an error or something that is not a verdict, or no answer
// within Timeout. Cancelling ctx aborts the scan and returns an error
// wrapping ctx's.
func (c *Client) Scan(ctx context.Context, data []byte) (Result, error) {
	if err := c.check(); err != nil {
		return Result{}, fmt.Errorf("clamd: scan: %w", err)
	}
	if limit := c.maxSize(); int64(len(data)) > limit {
		return Result{}, fmt.Errorf("clamd: scan %d bytes: %w (limit %d bytes)", len(data), ErrTooLarge, limit)
	}
	var res Result
	err := c.exchange(ctx, "scan", func(conn net.Conn) error {
		werr := sendStream(conn, data)
		answer, rerr := readAnswer(conn)
		if werr != nil {
			// clamd may have answered (size limit exceeded, say) and
			// closed the connection while the data was still going: its
			// answer says more than the broken pipe.
			if rerr == nil && strings.HasSuffix(answer, " ERROR") {
				_, err := parseScan(answer)
				return err
			}
			return fmt.Errorf("sending data: %w", werr)
		}
		if rerr != nil {
			return rerr
		}
		var err error
		res, err = parseScan(answer)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// Ping checks that clamd answers: it sends zPING and expects PONG within
// Timeout.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("clamd: ping: %w", err)
	}
	return c.exchange(ctx, "ping", func(conn net.Conn) error {
		if _, err := conn.Write([]byte("zPING\x00")); err != nil {
			return fmt.Errorf("sending PING: %w", err)
		}
		answer, err := readAnswer(conn)
		if err != nil {
			return err
		}
		if answer != "PONG" {
			return fmt.Errorf("unexpected answer %s to PING", quote(answer))
		}
		return nil
	})
}

// check reports a Client that cannot be used.
func (c *Client) check() error {
	if c == nil {
		return errors.New("nil Client")
	}
	switch c.Network {
	case "unix", "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("unsupported network %q (want unix or tcp)", c.Network)
	}
	if c.Address == "" {
		return errors.New("no address")
	}
	return nil
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c *Client) maxSize() int64 {
	if c.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return c.MaxSize
}

// exchange connects to clamd and runs fn on the connection, within Timeout
// and for as long as ctx lasts. Errors come back wrapped with op and the
// address, and with the cause when time ran out or ctx was cancelled.
func (c *Client) exchange(ctx context.Context, op string, fn func(net.Conn) error) error {
	where := fmt.Sprintf("clamd: %s via %s %s", op, c.Network, c.Address)
	timeout := c.timeout()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("no answer within %v: %w", timeout, os.ErrDeadlineExceeded))
	defer cancel()

	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Address)
	if err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			return fmt.Errorf("%s: connecting: %w", where, cerr)
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	defer conn.Close()
	// The end of ctx, by Timeout or by the caller, unblocks any read or
	// write, and it has happened by the time they fail because of it.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := fn(conn); err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			return fmt.Errorf("%s: %w", where, cerr)
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// sendStream writes the zINSTREAM command, data in chunks, each after its
// length as 4 bytes in network order, and the zero-length chunk that ends
// the stream.
func sendStream(w io.Writer, data []byte) error {
	if _, err := io.WriteString(w, "zINSTREAM\x00"); err != nil {
		return err
	}
	var hdr [4]byte
	for len(data) > 0 {
		n := min(len(data), chunkSize)
		binary.BigEndian.PutUint32(hdr[:], uint32(n))
		bufs := net.Buffers{hdr[:], data[:n]}
		if _, err := bufs.WriteTo(w); err != nil {
			return err
		}
		data = data[n:]
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	_, err := w.Write(hdr[:])
	return err
}

// readAnswer reads one answer of clamd to a z-command: text ended by a NUL
// byte (or by the end of the connection), at most maxAnswer bytes.
func readAnswer(r io.Reader) (string, error) {
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 256)
	for {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			return string(buf[:i]), nil
		}
		if len(buf) > maxAnswer {
			return "", fmt.Errorf("answer longer than %d bytes: %s", maxAnswer, quote(string(buf)))
		}
		if err == io.EOF {
			if len(buf) == 0 {
				return "", errors.New("connection closed with no answer")
			}
			return string(buf), nil
		}
		if err != nil {
			return "", fmt.Errorf("reading answer: %w", err)
		}
	}
}

// parseScan turns clamd's answer to zINSTREAM into a Result or an error.
func parseScan(answer string) (Result, error) {
	answer = strings.TrimRight(answer, "\r\n")
	switch {
	case strings.HasSuffix(answer, " ERROR"):
		if strings.Contains(answer, "size limit exceeded") {
			return Result{}, fmt.Errorf("clamd answered %s: %w", quote(answer), ErrTooLarge)
		}
		return Result{}, fmt.Errorf("clamd answered %s", quote(answer))
	case answer == "stream: OK":
		return Result{}, nil
	case len(answer) > len("stream:  FOUND") &&
		strings.HasPrefix(answer, "stream: ") && strings.HasSuffix(answer, " FOUND"):
		name := stripDetectionInfo(answer[len("stream: ") : len(answer)-len(" FOUND")])
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			break
		}
		return Result{Infected: true, Virus: name}, nil
	}
	return Result{}, fmt.Errorf("unexpected answer %s to INSTREAM", quote(answer))
}

// stripDetectionInfo removes the "(md5:size)" that clamd's
// ExtendedDetectionInfo appends to a signature name.
func stripDetectionInfo(name string) string {
	if !strings.HasSuffix(name, ")") {
		return name
	}
	i := strings.LastIndexByte(name, '(')
	if i <= 0 {
		return name
	}
	hash, size, ok := strings.Cut(name[i+1:len(name)-1], ":")
	if !ok || hash == "" || size == "" ||
		strings.Trim(hash, "0123456789abcdefABCDEF") != "" || strings.Trim(size, "0123456789") != "" {
		return name
	}
	return name[:i]
}

// quote quotes an answer for an error message, cut to a readable length.
func quote(s string) string {
	const max = 200
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
