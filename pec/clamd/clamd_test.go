package clamd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/clamd/clamdtest"
)

// eicar returns the EICAR anti-virus test file, put together at run time
// so that no file of the repository holds it.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-" + "FILE!$H+H*")
}

// clamdAddrs returns the addresses of a real clamd that detects EICAR.
func clamdAddrs(t *testing.T) (socket, tcp string) {
	t.Helper()
	return clamdtest.Start(t)
}

// mailWithAttachment returns a MIME message carrying data as a base64
// attachment, as a PEC message carries files.
func mailWithAttachment(data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Disposition: attachment; filename=\"file.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(base64.StdEncoding.EncodeToString(data))
	b.WriteString("\r\n--b1--\r\n")
	return b.Bytes()
}

// TestClamd scans with a real clamd, over its unix socket and over TCP.
func TestClamd(t *testing.T) {
	socket, tcp := clamdAddrs(t)
	random := make([]byte, 3<<20+17) // several chunks, not a multiple of one
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	const virus = "Eicar-Test-Signature.UNOFFICIAL"
	tooLong := make([]byte, 32<<20+1) // the StreamMaxLength of the tests' clamd (scripts/clamd.sh), above max_size

	tests := []struct {
		name    string
		data    []byte
		maxSize int64
		want    Result
		wantErr error // nil: no error
	}{
		{name: "eicar", data: eicar(), want: Result{Infected: true, Virus: virus}},
		{name: "eicar in a mail", data: mailWithAttachment(eicar()), want: Result{Infected: true, Virus: virus}},
		{name: "clean text", data: []byte("Nel mezzo del cammin di nostra vita\r\n")},
		{name: "clean mail", data: mailWithAttachment([]byte("not a virus"))},
		{name: "clean random", data: random},
		{name: "empty", data: nil},
		{name: "over clamd's limit", data: tooLong, maxSize: 64 << 20, wantErr: ErrTooLarge},
	}
	transports := []struct{ network, address string }{{"unix", socket}, {"tcp", tcp}}
	for _, tr := range transports {
		if tr.address == "" {
			t.Logf("no %s address for clamd: skipping it", tr.network)
			continue
		}
		t.Run(tr.network, func(t *testing.T) {
			c := &Client{Network: tr.network, Address: tr.address, Timeout: time.Minute}
			if err := c.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c := *c
					c.MaxSize = tt.maxSize
					got, err := c.Scan(t.Context(), tt.data)
					switch {
					case tt.wantErr != nil:
						if !errors.Is(err, tt.wantErr) {
							t.Fatalf("Scan = %+v, %v; want error %v", got, err, tt.wantErr)
						}
						t.Logf("error, as expected: %v", err)
					case err != nil:
						t.Fatalf("Scan: %v", err)
					case got != tt.want:
						t.Fatalf("Scan = %+v, want %+v", got, tt.want)
					}
				})
			}
		})
	}
}

// fakeClamd is a server standing in for clamd.
type fakeClamd struct {
	ln net.Listener
}

// startFake listens on network and serves every connection with handle.
func startFake(t *testing.T, network string, handle func(net.Conn)) *fakeClamd {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "fake.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeClamd{ln: ln}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	return f
}

// readStream reads a zINSTREAM command and its chunks from r, at most limit
// bytes of data, and returns the data.
func readStream(r io.Reader, limit int) ([]byte, error) {
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := io.ReadFull(r, cmd); err != nil {
		return nil, err
	}
	if string(cmd) != "zINSTREAM\x00" {
		return nil, fmt.Errorf("command %q", cmd)
	}
	var data []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			return data, nil
		}
		if len(data)+n > limit {
			return data, errors.New("size limit exceeded")
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, err
		}
		data = append(data, chunk...)
	}
}

func TestScanFake(t *testing.T) {
	const shortTimeout = 300 * time.Millisecond
	big := bytes.Repeat([]byte("x"), 8<<20)
	tests := []struct {
		name    string
		data    []byte
		limit   int    // the fake's stream limit; 0: 32 MB
		answer  string // written after the stream
		hang    bool   // never answer
		want    Result
		wantErr string // substring of the error; "" for none
		is      error  // the error must wrap this
	}{
		{name: "clean", data: []byte("hello"), answer: "stream: OK\x00"},
		{name: "found", data: []byte("hello"), answer: "stream: Foo.Bar-1 FOUND\x00",
			want: Result{Infected: true, Virus: "Foo.Bar-1"}},
		{name: "found with detection info", data: []byte("hello"),
			answer: "stream: Eicar-Test-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND\x00",
			want:   Result{Infected: true, Virus: "Eicar-Test-Signature"}},
		{name: "clean without NUL", data: []byte("hello"), answer: "stream: OK"},
		{name: "garbage", data: []byte("hello"), answer: "HTTP/1.1 400 Bad Request\r\n\r\n\x00",
			wantErr: "unexpected answer"},
		{name: "FOUND with no name", data: []byte("hello"), answer: "stream: FOUND\x00",
			wantErr: "unexpected answer"},
		{name: "name with control characters", data: []byte("hello"), answer: "stream: a\nb FOUND\x00",
			wantErr: "unexpected answer"},
		{name: "OK for another file", data: []byte("hello"), answer: "/etc/passwd: OK\x00",
			wantErr: "unexpected answer"},
		{name: "endless answer", data: []byte("hello"), answer: strings.Repeat("a", 10000),
			wantErr: "answer longer than"},
		{name: "no answer, closed", data: []byte("hello"), answer: "",
			wantErr: "connection closed with no answer"},
		{name: "clamd error", data: []byte("hello"), answer: "Can't allocate memory ERROR\x00",
			wantErr: `clamd answered "Can't allocate memory ERROR"`},
		{name: "size limit", data: []byte("hello"), answer: "INSTREAM size limit exceeded. ERROR\x00",
			is: ErrTooLarge},
		{name: "size limit mid-stream", data: big, limit: 1 << 20,
			answer: "INSTREAM size limit exceeded. ERROR\x00", is: ErrTooLarge},
		{name: "never answers", data: []byte("hello"), hang: true,
			wantErr: "no answer within", is: os.ErrDeadlineExceeded},
	}
	for _, network := range []string{"tcp", "unix"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				received := make(chan []byte, 1)
				f := startFake(t, network, func(conn net.Conn) {
					limit := tt.limit
					if limit == 0 {
						limit = 32 << 20
					}
					data, err := readStream(conn, limit)
					if err == nil {
						received <- data
					}
					if tt.hang {
						io.Copy(io.Discard, conn) // until the client gives up
						return
					}
					io.WriteString(conn, tt.answer)
				})
				// Only the case that wants the timeout gets a short one; the
				// others must not depend on how fast a busy machine answers.
				timeout := time.Minute
				if tt.hang {
					timeout = shortTimeout
				}
				c := &Client{Network: network, Address: f.ln.Addr().String(), Timeout: timeout}
				got, err := c.Scan(t.Context(), tt.data)
				if tt.wantErr == "" && tt.is == nil {
					if err != nil {
						t.Fatalf("Scan: %v", err)
					}
					if got != tt.want {
						t.Fatalf("Scan = %+v, want %+v", got, tt.want)
					}
					if data := <-received; !bytes.Equal(data, tt.data) {
						t.Fatalf("the server received %d bytes, want %d", len(data), len(tt.data))
					}
					return
				}
				if err == nil {
					t.Fatalf("Scan = %+v, nil; want an error", got)
				}
				if got != (Result{}) {
					t.Errorf("Scan returned %+v with its error", got)
				}
				if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Scan error %q, want it to contain %q", err, tt.wantErr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("Scan error %q does not wrap %v", err, tt.is)
				}
				if !strings.HasPrefix(err.Error(), "clamd: scan via "+network) {
					t.Errorf("Scan error %q lacks its context", err)
				}
			})
		}
	}
}

func TestPingFake(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		hang    bool
		wantErr string
	}{
		{name: "pong", answer: "PONG\x00"},
		{name: "garbage", answer: "PANG\x00", wantErr: `unexpected answer "PANG" to PING`},
		{name: "closed", answer: "", wantErr: "connection closed with no answer"},
		{name: "never answers", hang: true, wantErr: "no answer within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, "tcp", func(conn net.Conn) {
				cmd := make([]byte, len("zPING\x00"))
				if _, err := io.ReadFull(conn, cmd); err != nil || string(cmd) != "zPING\x00" {
					return
				}
				if tt.hang {
					io.Copy(io.Discard, conn)
					return
				}
				io.WriteString(conn, tt.answer)
			})
			// Only the case that wants the timeout gets a short one: on a busy
			// machine an answer may take longer than any short bound.
			timeout := time.Minute
			if tt.hang {
				timeout = 200 * time.Millisecond
			}
			c := &Client{Network: "tcp", Address: f.ln.Addr().String(), Timeout: timeout}
			err := c.Ping(t.Context())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Ping: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Ping error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestScanCancel checks that cancelling the context ends a scan that clamd
// never answers, long before Timeout.
func TestScanCancel(t *testing.T) {
	f := startFake(t, "tcp", func(conn net.Conn) { io.Copy(io.Discard, conn) })
	c := &Client{Network: "tcp", Address: f.ln.Addr().String(), Timeout: time.Minute}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := c.Scan(ctx, []byte("hello"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Scan = %v, want an error wrapping context.Canceled", err)
	}
}

// TestScanUnreachable checks the errors for a clamd that is not there, for
// a Client that cannot work, and for data over MaxSize, refused before
// connecting.
func TestScanUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		client  *Client
		data    []byte
		wantErr string
		is      error
	}{
		{name: "tcp refused", client: &Client{Network: "tcp", Address: closedPort}, wantErr: "connection refused"},
		{name: "unix missing", client: &Client{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock")},
			wantErr: "no such file"},
		{name: "nil client", client: nil, wantErr: "nil Client"},
		{name: "bad network", client: &Client{Network: "udp", Address: closedPort}, wantErr: `unsupported network "udp"`},
		{name: "no address", client: &Client{Network: "tcp"}, wantErr: "no address"},
		// Refused before connecting: connecting would fail otherwise.
		{name: "over MaxSize", client: &Client{Network: "tcp", Address: closedPort, MaxSize: 10},
			data: []byte("01234567890"), wantErr: "scan 11 bytes", is: ErrTooLarge},
		{name: "over the default MaxSize", client: &Client{Network: "tcp", Address: closedPort},
			data: make([]byte, DefaultMaxSize+1), is: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				data = []byte("hello")
			}
			got, err := tt.client.Scan(t.Context(), data)
			if err == nil {
				t.Fatalf("Scan = %+v, nil; want an error", got)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Scan error %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Scan error %q does not wrap %v", err, tt.is)
			}
			if err := tt.client.Ping(t.Context()); err == nil {
				t.Errorf("Ping succeeded")
			}
		})
	}
}
