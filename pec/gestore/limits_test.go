package gestore

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/connlimit"
)

// session is a raw SMTP client of a test.
type session struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialSMTP connects to addr and reads the greeting; a hang fails after a
// minute, never a slow machine sooner.
func dialSMTP(t *testing.T, addr string) (*session, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	s := &session{t: t, conn: conn, r: bufio.NewReader(conn)}
	greeting, _ := readReply(s.r)
	return s, greeting
}

// cmd sends line and returns the reply, "" if the connection ended.
func (s *session) cmd(line string) string {
	s.t.Helper()
	if _, err := s.conn.Write([]byte(line + "\r\n")); err != nil {
		return ""
	}
	reply, _ := readReply(s.r)
	return reply
}

// ended reports whether reply means the server closed the session.
func ended(reply string) bool { return reply == "" || strings.HasPrefix(reply, "421 ") }

// TestSessionLimits checks that no client holds a session forever: NOOPs
// before MAIL, NOOPs after it, or an endless run of RSETs; and that a DATA
// whose client stops sending is answered without internal addresses.
func TestSessionLimits(t *testing.T) {
	p := newPair(t, startOptions{limits: func(o *Options) {
		o.PreMailTimeout = 300 * time.Millisecond
		o.MaxSessionTime = 2 * time.Second
		o.MaxTransactions = 5
		o.Timeout = time.Second
	}})
	g := p.b
	g.addMailbox(t, "anna@"+g.domain, "pw", 0) // RCPT refuses what is not a mailbox
	// A NOOP every 20 ms keeps no session open past the pre-MAIL timeout
	// (before, the server's 5-minute idle timeout was reset by each one:
	// the loop below never ended).
	noopUntilEnd := func(s *session) int {
		for i := 1; i <= 3000; i++ {
			if reply := s.cmd("NOOP"); ended(reply) {
				return i
			} else if !strings.HasPrefix(reply, "250") {
				t.Fatalf("NOOP: %q", reply)
			}
			time.Sleep(20 * time.Millisecond) // pace, not synchronisation
		}
		t.Fatal("the session survived 3000 NOOPs")
		return 0
	}
	for _, addr := range []string{g.ricezione, g.submission} {
		s, _ := dialSMTP(t, addr)
		if reply := s.cmd("EHLO client.test"); !strings.HasPrefix(reply, "250") {
			t.Fatalf("EHLO: %q", reply)
		}
		noopUntilEnd(s)
	}
	// After MAIL the session may last MaxSessionTime, no longer.
	s, _ := dialSMTP(t, g.ricezione)
	s.cmd("EHLO client.test")
	if reply := s.cmd("MAIL FROM:<x@example.org>"); !strings.HasPrefix(reply, "250") {
		t.Fatalf("MAIL: %q", reply)
	}
	noopUntilEnd(s)

	// RSETs: MaxTransactions of them, then the session ends.
	s, _ = dialSMTP(t, g.ricezione)
	s.cmd("EHLO client.test")
	for i := 1; i <= 5; i++ {
		if reply := s.cmd("RSET"); !strings.HasPrefix(reply, "250") {
			t.Fatalf("RSET %d: %q", i, reply)
		}
	}
	s.cmd("RSET") // the sixth: its reply may still come
	if reply := s.cmd("NOOP"); !ended(reply) {
		t.Fatalf("after 6 RSETs with MaxTransactions 5, NOOP got %q, want the session ended", reply)
	}

	// A client that stops in the middle of DATA gets a fixed reply (it got
	// "554 5.0.0 Error: transaction failed: read tcp 127.0.0.1:...->...:
	// i/o timeout").
	s, _ = dialSMTP(t, g.ricezione)
	s.cmd("EHLO client.test")
	s.cmd("MAIL FROM:<x@example.org>")
	s.cmd("RCPT TO:<anna@" + g.domain + ">")
	if reply := s.cmd("DATA"); !strings.HasPrefix(reply, "354") {
		t.Fatalf("DATA: %q", reply)
	}
	s.conn.Write([]byte("Subject: half a message\r\n"))
	reply, _ := readReply(s.r)
	if !strings.HasPrefix(reply, "451 4.4.2 ") || strings.Contains(reply, "127.0.0.1") || strings.Contains(reply, "tcp") {
		t.Fatalf("a DATA that timed out got %q, want 451 4.4.2 with no address", reply)
	}
}

// TestConnectionAndDataCaps checks the per-address connection cap of an
// SMTP listener and the per-address cap on messages in transfer.
func TestConnectionAndDataCaps(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{limits: func(o *Options) {
		o.Limits = connlimit.Options{MaxPerAddress: 3}
		o.MaxDataPerAddress = 1
	}})
	g := p.b
	g.addMailbox(t, "anna@"+g.domain, "pw", 0) // RCPT refuses what is not a mailbox
	var held []*session
	for range 3 {
		s, greeting := dialSMTP(t, g.ricezione)
		if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("greeting %q", greeting)
		}
		held = append(held, s)
	}
	_, greeting := dialSMTP(t, g.ricezione)
	if !strings.HasPrefix(greeting, "421 4.7.0 ") {
		t.Fatalf("the fourth connection from one address got %q, want 421 4.7.0", greeting)
	}

	// One message in transfer from the address: a second DATA gets 451
	// 4.3.2, and goes through once the first is done.
	msg := "From: x@example.org\r\nTo: anna@" + g.domain + "\r\nSubject: ordinary\r\n\r\nhello\r\n.\r\n"
	begin := func(s *session) {
		s.cmd("EHLO client.test")
		s.cmd("MAIL FROM:<x@example.org>")
		s.cmd("RCPT TO:<anna@" + g.domain + ">")
		if reply := s.cmd("DATA"); !strings.HasPrefix(reply, "354") {
			t.Fatalf("DATA: %q", reply)
		}
	}
	first, second := held[0], held[1]
	begin(first)
	first.conn.Write([]byte("Subject: slow\r\n"))
	waitFor(t, "the first message in transfer", time.Minute, func() (bool, error) {
		return g.srv.lim.data.inUse() == 1, nil
	})
	begin(second)
	second.conn.Write([]byte(msg))
	if reply, _ := readReply(second.r); !strings.HasPrefix(reply, "451 4.3.2 ") {
		t.Fatalf("a second DATA from the same address got %q, want 451 4.3.2", reply)
	}
	first.conn.Write([]byte("\r\nhello\r\n.\r\n"))
	if reply, _ := readReply(first.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the first message: %q", reply)
	}
	begin(second)
	second.conn.Write([]byte(msg))
	if reply, _ := readReply(second.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the second message, retried: %q", reply)
	}
}

// zeros is an endless reader of message-like bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	// Doubling copies, not a byte loop: the race detector checks a copy
	// once, a loop once a byte (29 MiB, three times over, was most of
	// TestSpoolMemory's time under -race).
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = 'A'
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
	return len(p), nil
}

// TestSpoolMemory measures what receiving a 29 MB message allocates: with
// spooling, a buffer up to the threshold; before, io.ReadAll's growing
// buffers, about twice the message.
func TestSpoolMemory(t *testing.T) {
	const size = 29 << 20
	s := &Server{opts: Options{SpoolThreshold: DefaultSpoolThreshold, SpoolDir: t.TempDir()}}
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var sp *spooled
	spoolAlloc := allocated(func() {
		var err error
		if sp, err = s.spool(io.LimitReader(zeros{}, size)); err != nil {
			t.Fatal(err)
		}
	})
	defer sp.close()
	if sp.f == nil || sp.size != size {
		t.Fatalf("spooled %d bytes, file %v", sp.size, sp.f != nil)
	}
	readAllAlloc := allocated(func() {
		if _, err := io.ReadAll(io.LimitReader(zeros{}, size)); err != nil {
			t.Fatal(err)
		}
	})
	var msg []byte
	loadAlloc := allocated(func() {
		var err error
		msg, err = sp.bytes()
		if err != nil {
			t.Fatal(err)
		}
	})
	if len(msg) != size || !bytes.Equal(msg[size-3:], []byte("AAA")) {
		t.Fatalf("loaded %d bytes", len(msg))
	}
	t.Logf("29 MiB message: spooling allocates %d KiB, loading %d KiB; io.ReadAll allocated %d KiB",
		spoolAlloc>>10, loadAlloc>>10, readAllAlloc>>10)
	if spoolAlloc > 3*DefaultSpoolThreshold {
		t.Errorf("spooling allocated %d bytes, want at most %d", spoolAlloc, 3*DefaultSpoolThreshold)
	}
	// A small message stays in memory, in one piece.
	small, err := s.spool(strings.NewReader("short"))
	if err != nil || small.f != nil || string(small.head) != "short" {
		t.Fatalf("small message: %v, %+v", err, small)
	}
	// The spool file is unlinked at once: nothing is left in the directory.
	if ents, _ := os.ReadDir(s.opts.SpoolDir); len(ents) != 0 {
		t.Errorf("spool directory holds %d files", len(ents))
	}
}

// TestBudget checks the memory budget: a request waits while others hold
// the memory it needs, one larger than the budget runs alone, and a wait
// ends with its context.
func TestBudget(t *testing.T) {
	b := &budget{max: 100}
	ctx := context.Background()
	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, 60) }()
	select {
	case err := <-done:
		t.Fatalf("a second 60 of 100 granted (%v) while the first is held", err)
	default:
	}
	b.release(60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(short, 60); err == nil {
		t.Fatal("granted past the budget with a cancelled context")
	}
	b.release(60)
	if err := b.acquire(ctx, 500); err != nil { // alone: granted
		t.Fatal(err)
	}
	b.release(500)
}
