package imapserver

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/connlimit"
)

// noopUntilClosed sends a NOOP every 20 ms until the server closes the
// connection, and fails if it never does.
func noopUntilClosed(t *testing.T, rc *rawConn) {
	t.Helper()
	for i := range 3000 {
		if _, closed := rc.exchange("n NOOP\r\n", "n"); closed {
			return
		}
		if i == 0 {
			continue
		}
		time.Sleep(20 * time.Millisecond) // pace, not synchronisation
	}
	t.Fatal("the session survived 3000 NOOPs")
}

// TestSessionLimits checks that NOOPs keep no connection open past the
// login timeout, nor a logged-in session past its maximum length out of
// IDLE, while IDLE itself is not cut.
func TestSessionLimits(t *testing.T) {
	const maxSession = 500 * time.Millisecond
	e := newEnv(t, func(o *Options) {
		o.InsecureAuth = true
		o.PreAuthTimeout = 300 * time.Millisecond
		o.MaxSessionTime = maxSession
	})
	// Before login (before, go-imap's 30 s command timeout was reset by
	// every NOOP).
	noopUntilClosed(t, dialRaw(t, e.addr))

	// Logged in, out of IDLE.
	rc := dialRaw(t, e.addr)
	if lines, _ := rc.exchange("a LOGIN "+mario+" "+marioPW+"\r\n", "a"); !strings.HasPrefix(lines[len(lines)-1], "a OK") {
		t.Fatalf("login: %q", lines)
	}
	noopUntilClosed(t, rc)

	// In IDLE past MaxSessionTime, then closed once out of it.
	rc = dialRaw(t, e.addr)
	rc.exchange("a LOGIN "+mario+" "+marioPW+"\r\n", "a")
	rc.exchange("b SELECT INBOX\r\n", "b")
	if lines, _ := rc.exchange("c IDLE\r\n", "c"); !strings.HasPrefix(lines[len(lines)-1], "+ ") {
		t.Fatalf("IDLE: %q", lines)
	}
	time.Sleep(3 * maxSession) // at least that long in IDLE: a lower bound, whatever the load
	if lines, closed := rc.exchange("DONE\r\n", "c"); closed || !strings.HasPrefix(lines[len(lines)-1], "c OK") {
		t.Fatalf("DONE after %v in IDLE: %q, closed %v", 3*maxSession, lines, closed)
	}
	noopUntilClosed(t, rc)
}

// TestConnectionCap checks the per-address cap of Serve's listener.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = connlimit.Options{MaxPerAddress: 2} })
	dialRaw(t, e.addr)
	dialRaw(t, e.addr)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := c.Read(make([]byte, 100))
	if n != 0 || err == nil {
		t.Fatalf("a third connection from one address read %d bytes, %v; want it closed", n, err)
	}
}

// TestInvalidMailboxNames checks that names that are not valid modified
// UTF-7 get BAD [CLIENTBUG], not NO [SERVERBUG] (go-imap's decoder fails on
// them before any session method is called).
func TestInvalidMailboxNames(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.InsecureAuth = true })
	rc := dialRaw(t, e.addr)
	rc.exchange("a LOGIN "+mario+" "+marioPW+"\r\n", "a")
	rc.exchange("s SELECT INBOX\r\n", "s")
	for _, cmd := range []string{
		"FETCH 1:x FLAGS", "CREATE &", "CREATE &Jjo", "SELECT &Jjo!", "STATUS &AGE- (MESSAGES)", "DELETE &",
		"RENAME INBOX &",
	} {
		lines, closed := rc.exchange("t "+cmd+"\r\n", "t")
		last := ""
		if len(lines) > 0 {
			last = lines[len(lines)-1]
		}
		if closed || !strings.HasPrefix(last, "t BAD [CLIENTBUG] ") || strings.Contains(last, "SERVERBUG") {
			t.Errorf("%s: %q (closed %v), want BAD [CLIENTBUG]", cmd, lines, closed)
		}
	}
	// Valid names still work.
	if lines, _ := rc.exchange("t CREATE &ZeVnLIqe-\r\n", "t"); !strings.HasPrefix(lines[len(lines)-1], "t OK") {
		t.Errorf("CREATE of a valid name: %q", lines)
	}
}
