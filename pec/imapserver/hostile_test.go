package imapserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/custode/custode/pec/mailstore"
)

// rawConn is a bare TCP IMAP connection.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	if l, _ := rc.readLine(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return rc
}

func (rc *rawConn) readLine() (string, error) {
	return rc.readLineWithin(10 * time.Second)
}

func (rc *rawConn) readLineWithin(d time.Duration) (string, error) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	return rc.r.ReadString('\n')
}

// exchange sends data and reads until the response tagged tag, a
// continuation request, or the end of the connection. It returns the lines
// read and whether the connection ended.
func (rc *rawConn) exchange(data, tag string) (lines []string, closed bool) {
	lines, closed, silent := rc.exchangeWithin(data, tag, 10*time.Second)
	if silent {
		rc.t.Fatalf("no answer to %.60q: %.300q", data, lines)
	}
	return lines, closed
}

// exchangeWithin is exchange reporting silence longer than d.
func (rc *rawConn) exchangeWithin(data, tag string, d time.Duration) (lines []string, closed, silent bool) {
	rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write([]byte(data)); err != nil {
		return nil, true, false
	}
	for {
		l, err := rc.readLineWithin(d)
		if l != "" {
			lines = append(lines, l)
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return lines, false, true
			}
			return lines, true, false
		}
		if strings.HasPrefix(l, tag+" ") || strings.HasPrefix(l, "+ ") || strings.HasPrefix(l, "* BYE") {
			return lines, false, false
		}
	}
}

func TestHostileClient(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.InsecureAuth = true })
	ctx := context.Background()
	e.deliver(t, mario, pecMessage("normale"))
	for _, m := range hostileMessages() {
		if _, err := e.store.Deliver(ctx, mailstore.Delivery{Address: mario, Message: m}); err != nil {
			t.Fatal(err)
		}
	}

	// Before login. Each case on a new connection: the server answers BAD or
	// NO, or closes the connection.
	preAuth := []struct {
		name, send, tag string
	}{
		{"garbage bytes", "\x00\xff\x01\x02 garbage\r\n", "\x00"},
		{"empty line", "\r\n", "*"},
		{"tag only", "a1\r\n", "a1"},
		{"unknown command", "a1 FROBNICATE now\r\n", "a1"},
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET"},
		{"long line", "a1 LOGIN " + strings.Repeat("x", 1<<20), "a1"},
		{"long line with newline", "a1 LOGIN " + strings.Repeat("x", 1<<20) + " y\r\n", "a1"},
		{"huge literal", "a1 LOGIN {999999999}\r\n", "a1"},
		{"huge non-synchronizing literal", "a1 LOGIN {999999999+}\r\n", "a1"},
		{"literal size overflow", "a1 LOGIN {99999999999999999999999}\r\n", "a1"},
		{"huge append", "a1 APPEND INBOX {999999999}\r\n", "a1"},
		{"select before login", "a1 SELECT INBOX\r\n", "a1"},
		{"fetch before login", "a1 FETCH 1:* BODY[]\r\n", "a1"},
		{"bad base64 sasl", "a1 AUTHENTICATE PLAIN !!!!\r\n", "a1"},
		{"starttls then garbage", "a1 STARTTLS\r\nnot a TLS handshake\r\n", "a1"},
	}
	for _, tt := range preAuth {
		t.Run(tt.name, func(t *testing.T) {
			// Each on its own connection, in parallel: two wait 2 s for
			// silence. They run once the cases after login are done.
			t.Parallel()
			rc := dialRaw(t, e.addr)
			lines, closed, silent := rc.exchangeWithin(tt.send, tt.tag, 2*time.Second)
			if silent {
				// go-imap refuses an oversized literal only once the
				// command line ends, so a client that announced one and
				// waits gets no answer until it sends more (or the
				// server's 30 s read timeout closes the connection).
				var more []string
				more, closed = rc.exchange("\r\n", tt.tag)
				lines = append(lines, more...)
			}
			last := ""
			if len(lines) > 0 {
				last = lines[len(lines)-1]
			}
			switch {
			case closed:
			case strings.Contains(last, " BAD"), strings.Contains(last, " NO"), strings.HasPrefix(last, "* BYE"):
			case tt.name == "starttls then garbage" && strings.Contains(last, " OK"):
				// The server then fails the handshake and hangs up.
				if _, err := rc.readLine(); err == nil {
					t.Fatal("the connection survived a broken TLS handshake")
				}
			default:
				t.Fatalf("answer %q", lines)
			}
			t.Logf("%s: %d lines, closed %v, silent %v, last %.80q", tt.name, len(lines), closed, silent, last)
		})
	}

	// After login: each command gets BAD or NO (or a harmless OK), and the
	// connection keeps working, unless go-imap gave up on it after a
	// syntax error it could not skip (then it is closed, and we reconnect).
	connect := func() *rawConn {
		rc := dialRaw(t, e.addr)
		if lines, _ := rc.exchange("L LOGIN "+mario+" "+marioPW+"\r\n", "L"); !strings.HasPrefix(lines[len(lines)-1], "L OK") {
			t.Fatalf("login: %q", lines)
		}
		if lines, _ := rc.exchange("S SELECT INBOX\r\n", "S"); !strings.HasPrefix(lines[len(lines)-1], "S OK") {
			t.Fatalf("select: %q", lines)
		}
		return rc
	}
	rc := connect()
	postAuth := []struct{ name, send string }{
		{"deep section", "FETCH 1:* (BODY.PEEK[" + strings.Repeat("1.", 2000) + "1])"},
		{"missing section", "FETCH 1:* (BODY.PEEK[999.999.999])"},
		{"max seq", "FETCH 4294967295 FLAGS"},
		{"seq overflow", "FETCH 99999999999 FLAGS"},
		{"zero seq", "FETCH 0 FLAGS"},
		{"many ranges", "UID FETCH " + strings.Repeat("1:*,", 10000) + "1 FLAGS"},
		{"everything", "FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.1.MIME] BODY.PEEK[HEADER.FIELDS (From Subject)] BINARY.PEEK[1] BINARY.SIZE[1])"},
		{"deep not", "SEARCH " + strings.Repeat("NOT ", 5000) + "ALL"},
		{"deep or", "SEARCH " + strings.Repeat("OR ALL ", 3000) + "ALL"},
		{"search text in hostile messages", "SEARCH TEXT zibaldone"},
		{"search bad charset", "SEARCH CHARSET KOI8-R ALL"},
		{"search modseq", "SEARCH MODSEQ 5"},
		{"search searchres", "SEARCH $"},
		{"exponential list", `LIST "" "` + strings.Repeat("*a", 400) + `b"`},
		{"store bogus flag", `STORE 1 +FLAGS (\Bogus)`},
		{"store many flags", "STORE 1 +FLAGS (" + strings.Repeat("k ", 200) + ")"},
		{"store nonsense", "STORE 1 FROB (x)"},
		{"select empty", `SELECT ""`},
		{"select wildcard", `SELECT "*"`},
		{"create control chars", "CREATE {3}\r\na\r\n"},
		{"create huge", "CREATE " + strings.Repeat("x", 4000)},
		{"rename inbox onto itself", "RENAME INBOX INBOX"},
		{"delete inbox", "DELETE INBOX"},
		{"copy to empty", `COPY 1:* ""`},
		{"move to self", "MOVE 1 INBOX"},
		{"uid expunge star", "UID EXPUNGE *"},
		{"status bad item", "STATUS INBOX (FOO)"},
		{"append empty", "APPEND INBOX {0}\r\n"},
		{"append bad flag", "APPEND INBOX (\\Bogus) {5}\r\nhello"},
		{"append bad date", `APPEND INBOX "99-Foo-9999 99:99:99 +9999" {5}` + "\r\nhello"},
		{"idle not done", "IDLE\r\nnot done"},
		{"enable nonsense", "ENABLE X-NOTHING"},
		{"login again", "LOGIN " + anna + " " + annaPW},
		{"unknown", "XYZZY"},
	}
	reconnects := 0
	for i, tt := range postAuth {
		tag := fmt.Sprintf("h%d", i)
		lines, closed := rc.exchange(tag+" "+tt.send+"\r\n", tag)
		for !closed && len(lines) > 0 && strings.HasPrefix(lines[len(lines)-1], "+ ") {
			// A literal or IDLE was accepted: the rest is already sent.
			var more []string
			more, closed = rc.exchange("", tag)
			lines = append(lines, more...)
		}
		if !closed {
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, tag+" ") {
				t.Fatalf("%s: answer %q", tt.name, lines)
			}
			if strings.HasPrefix(last, tag+" OK") && strings.Contains(tt.name, "empty") && !strings.Contains(tt.name, "append") {
				t.Errorf("%s: accepted: %q", tt.name, last)
			}
			t.Logf("%s: %.100q", tt.name, last)
			l, c := rc.exchange("n NOOP\r\n", "n")
			closed = c || len(l) == 0 || !strings.HasPrefix(l[len(l)-1], "n OK")
		}
		if closed {
			t.Logf("%s: connection closed; reconnecting", tt.name)
			reconnects++
			rc = connect()
		}
	}
	if reconnects > 3 {
		t.Errorf("%d hostile commands cost the connection, want at most 3", reconnects)
	}

	// The server still serves a good client.
	c := e.login(t, mario, marioPW, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if len(got) != 1 || !bytes.Equal(got[0].BodySection[0].Bytes, pecMessage("normale")) {
		t.Fatalf("good client got %+v", got)
	}
	if err := e.store.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// hostileMessages are messages a hostile sender could get delivered.
func hostileMessages() [][]byte {
	var deep bytes.Buffer
	const levels = 5000
	for i := range levels {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nzibaldone\r\n")
	for i := levels - 1; i >= 0; i-- {
		fmt.Fprintf(&deep, "--b%d--\r\n", i)
	}
	var nested bytes.Buffer
	for range 3000 {
		nested.WriteString("Content-Type: message/rfc822\r\n\r\n")
	}
	nested.WriteString("Subject: fondo\r\n\r\nzibaldone\r\n")
	return [][]byte{
		deep.Bytes(),
		nested.Bytes(),
		[]byte("no header at all, no blank line"),
		[]byte("\r\n\r\nbody only"),
		append([]byte("Subject: "), bytes.Repeat([]byte("x"), 200000)...),
		[]byte("Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n"),
		[]byte("Content-Type: text/plain; charset=\"x-unknown\"\r\nContent-Transfer-Encoding: x-bogus\r\n\r\n\xff\xfe\x00zibaldone"),
		[]byte("From: =?x-unknown?q?=FF?= <@>\r\nDate: not a date\r\nSubject: =?utf-8?b?!!!?=\r\n\r\n"),
		bytes.Repeat([]byte{0, 0xff, '\r', '\n'}, 10000),
	}
}
