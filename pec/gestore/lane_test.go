package gestore

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/connlimit"
)

// dialSMTPFrom is dialSMTP from the loopback address ip.
func dialSMTPFrom(t *testing.T, addr string, ip net.IP) (*session, string) {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	s := &session{t: t, conn: conn, r: bufio.NewReader(conn)}
	greeting, _ := readReply(s.r)
	return s, greeting
}

// TestKnownPeerUnderConnectionFlood checks that the punto di ricezione
// lets in another gestore that has delivered before while strangers hold
// every place of its connection cap (sessions under way, which no
// newcomer may take over): before, gestore A was refused at connect with
// 421 and deferred its busta di trasporto (30 s at the queue's first
// backoff, which was the hostile bench's p99), for as long as the
// strangers liked. It checks too that B keeps what it learned across a
// restart, and that a stranger's ordinary mail teaches it nothing.
func TestKnownPeerUnderConnectionFlood(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	const maxConns = 3
	base := t.TempDir()
	p := newPair(t, startOptions{limits: func(o *Options) {
		o.SpoolDir = filepath.Join(base, o.Gestore.Domain())
		if o.Gestore.Domain() == "pec.beta.test" {
			// B alone: A's refusals would defer B's ricevute, and the
			// test clock never brings a deferred item back.
			o.Limits = connlimit.Options{MaxConns: maxConns}
		}
	}})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	const a = "127.0.0.1" // gestore A delivers from here, as the tests dial
	stranger := net.IPv4(127, 0, 0, 2)
	if p.b.srv.lim.peers.known(a) {
		t.Fatal("B knows A's address before any delivery")
	}

	// A stranger's ordinary mail, taken (as a busta di anomalia), proves
	// nothing.
	s, greeting := dialSMTPFrom(t, p.b.ricezione, stranger)
	if !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q", greeting)
	}
	for _, line := range []string{"EHLO stranger.test", "MAIL FROM:<x@example.org>", "RCPT TO:<" + lucia + ">", "DATA"} {
		if reply := s.cmd(line); !strings.HasPrefix(reply, "2") && !strings.HasPrefix(reply, "354") {
			t.Fatalf("%s: %q", line, reply)
		}
	}
	if reply := s.cmd("From: x@example.org\r\nTo: " + lucia + "\r\nSubject: ordinaria\r\n\r\nciao\r\n."); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("ordinary mail: %q", reply)
	}
	s.cmd("QUIT")
	if p.b.srv.lim.peers.known("127.0.0.2") {
		t.Error("a stranger's ordinary mail made its address a known peer")
	}

	// A delivers a busta di trasporto: B learns its address.
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Prima")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	p.a.waitKinds(t, mario, pec.KindConsegnaCompleta)
	if !p.b.srv.lim.peers.known(a) {
		t.Fatal("B does not know A's address after taking its busta in charge")
	}

	// A keeps no session to B open: its next busta needs a new
	// connection.
	p.a.srv.mu.Lock()
	idle := p.a.srv.idle
	p.a.srv.idle = map[string][]*idleConn{}
	p.a.srv.mu.Unlock()
	for _, list := range idle {
		for _, ic := range list {
			ic.c.Close()
		}
	}
	// Strangers take every place left with sessions under way, until one
	// is refused. (Places held by connections that have just ended are
	// released as B's sessions see them end.)
	for held := 0; ; held++ {
		if held > maxConns+20 {
			t.Fatal("strangers never filled the connection cap")
		}
		s, greeting := dialSMTPFrom(t, p.b.ricezione, stranger)
		if strings.HasPrefix(greeting, "421 ") {
			break
		}
		if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("a stranger's connection got %q", greeting)
		}
		s.cmd("EHLO stranger.test")
		if reply := s.cmd("MAIL FROM:<x@example.org>"); !strings.HasPrefix(reply, "250 ") {
			t.Fatalf("MAIL: %q", reply)
		}
	}
	// A's address still gets in, and A's next busta is delivered while
	// the strangers hold on.
	if _, greeting := dialSMTPFrom(t, p.b.ricezione, net.ParseIP(a)); !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("the known gestore's connection with the cap full got %q, want served", greeting)
	}
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Seconda")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitFor(t, "the second busta in lucia's mailbox", time.Minute, func() (bool, error) {
		return len(p.b.messages(t, lucia)) == 3, nil // the busta di anomalia and two buste
	})

	// What B learned outlives it.
	p.b.stop()
	file := filepath.Join(base, p.b.domain, DefaultPeersFile)
	if !loadPeers(file, time.Now, nil).known(a) {
		t.Errorf("%s does not name A's address after a restart", file)
	}
}

// TestPeers checks the known peers' set: what it reads back, what it
// forgets (expired, the least recent past MaxPeers), and that a file it
// cannot use gives an empty set rather than an error.
func TestPeers(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	write := func(t *testing.T, data []byte) string {
		path := filepath.Join(t.TempDir(), DefaultPeersFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	encode := func(m map[string]time.Time) []byte {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	many := map[string]time.Time{}
	for i := range MaxPeers + 10 {
		// 10.0.x.y, the first ten the least recent.
		many[net.IPv4(10, 0, byte(i>>8), byte(i)).String()] = now.Add(-time.Duration(MaxPeers+10-i) * time.Minute)
	}
	tests := []struct {
		name       string
		file       func(t *testing.T) string
		known, not []string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, nil, []string{"192.0.2.1"}},
		{"in memory", func(*testing.T) string { return "" }, nil, []string{"192.0.2.1"}},
		{"fresh and expired", func(t *testing.T) string {
			return write(t, encode(map[string]time.Time{"192.0.2.1": now.Add(-time.Hour), "192.0.2.2": now.Add(-PeerTTL)}))
		}, []string{"192.0.2.1"}, []string{"192.0.2.2"}},
		{"past MaxPeers", func(t *testing.T) string { return write(t, encode(many)) },
			[]string{"10.0.0.10", "10.0.4.9"}, []string{"10.0.0.0", "10.0.0.9"}},
		{"malformed", func(t *testing.T) string { return write(t, []byte(`{"192.0.2.1": 12`)) }, nil, []string{"192.0.2.1"}},
		{"too large", func(t *testing.T) string {
			return write(t, append(encode(map[string]time.Time{"192.0.2.1": now}), make([]byte, maxPeersFile)...))
		}, nil, []string{"192.0.2.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.file(t)
			ps := loadPeers(path, clock, nil)
			for _, k := range tt.known {
				if !ps.known(k) {
					t.Errorf("%s not known", k)
				}
			}
			for _, k := range tt.not {
				if ps.known(k) {
					t.Errorf("%s known", k)
				}
			}
			// Learning saves the set (when it has a file); reading it
			// back knows the address.
			ps.learn("198.51.100.7")
			if !ps.known("198.51.100.7") {
				t.Fatal("not known after learn")
			}
			if path == "" {
				return
			}
			if again := loadPeers(path, clock, nil); !again.known("198.51.100.7") {
				t.Errorf("%s read back does not know the address learned", path)
			}
		})
	}
}

// TestKnownPeerDataLane checks that a known gestore's message is taken
// while strangers' messages in transfer fill the DATA slots: before, a
// crowd of slow anonymous messages (DATA allows a silence of minutes and
// a session 30) answered every busta 451 4.3.2, and the sending gestore
// deferred them all.
func TestKnownPeerDataLane(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{limits: func(o *Options) {
		if o.Gestore.Domain() == "pec.beta.test" {
			// B alone: A's 451 would defer B's ricevute (two at once
			// from one address), and the test clock never brings a
			// deferred item back.
			o.MaxData, o.MaxDataPerAddress = 1, 1
		}
	}})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Prima")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	p.a.waitKinds(t, mario, pec.KindConsegnaCompleta)

	begin := func(s *session) string {
		s.cmd("EHLO client.test")
		s.cmd("MAIL FROM:<x@example.org>")
		if reply := s.cmd("RCPT TO:<" + lucia + ">"); !strings.HasPrefix(reply, "250 ") {
			t.Fatalf("RCPT: %q", reply)
		}
		return s.cmd("DATA")
	}
	msg := "From: x@example.org\r\nTo: " + lucia + "\r\nSubject: ordinaria\r\n\r\nciao\r\n.\r\n"
	// A stranger's message in transfer takes the strangers' only slot.
	slow, _ := dialSMTPFrom(t, p.b.ricezione, net.IPv4(127, 0, 0, 2))
	if reply := begin(slow); !strings.HasPrefix(reply, "354") {
		t.Fatalf("DATA: %q", reply)
	}
	slow.conn.Write([]byte("Subject: lento\r\n"))
	waitFor(t, "the stranger's message in transfer", time.Minute, func() (bool, error) {
		return p.b.srv.lim.data.inUse() == 1, nil
	})
	other, _ := dialSMTPFrom(t, p.b.ricezione, net.IPv4(127, 0, 0, 4))
	begin(other)
	other.conn.Write([]byte(msg))
	if reply, _ := readReply(other.r); !strings.HasPrefix(reply, "451 4.3.2 ") {
		t.Fatalf("another stranger's DATA got %q, want 451 4.3.2", reply)
	}
	// From the known gestore's address, a message is taken, and A's
	// next busta is delivered, while the stranger's holds its slot.
	known, _ := dialSMTPFrom(t, p.b.ricezione, net.IPv4(127, 0, 0, 1))
	begin(known)
	known.conn.Write([]byte(msg))
	if reply, _ := readReply(known.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the known gestore's DATA with the strangers' slots full got %q, want 250", reply)
	}
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Seconda")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitFor(t, "the second busta in lucia's mailbox", time.Minute, func() (bool, error) {
		n := 0
		for _, m := range p.b.parsed(t, lucia) {
			if m.Kind == pec.KindBustaTrasporto {
				n++
			}
		}
		return n == 2, nil
	})
	if got := p.b.srv.lim.data.inUse(); got != 1 {
		t.Errorf("the strangers' slots in use: %d, want the slow message's 1", got)
	}
	slow.conn.Write([]byte("\r\nciao\r\n.\r\n"))
	if reply, _ := readReply(slow.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the stranger's message, once sent: %q", reply)
	}
}

// TestStrangerSpoolTurn checks that strangers' large messages are read
// past the spool threshold one turn at a time (MaxStrangerSpool), the
// next waiting unread, while a known gestore's large busta is taken at
// once: before, 16 concurrent anonymous 29 MB messages were all read,
// spooled and wrapped at once, and took most of the CPU from the PEC
// traffic.
func TestStrangerSpoolTurn(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{limits: func(o *Options) {
		if o.Gestore.Domain() == "pec.beta.test" {
			o.SpoolThreshold, o.MaxStrangerSpool = 1<<10, 1
		}
	}})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Prima")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	p.a.waitKinds(t, mario, pec.KindConsegnaCompleta)
	turns := p.b.srv.lim.strangerSpool

	body := strings.Repeat(strings.Repeat("x", 76)+"\r\n", 64) // 5 KiB, past the threshold
	begin := func(ip net.IP) *session {
		s, _ := dialSMTPFrom(t, p.b.ricezione, ip)
		s.cmd("EHLO stranger.test")
		s.cmd("MAIL FROM:<x@example.org>")
		s.cmd("RCPT TO:<" + lucia + ">")
		if reply := s.cmd("DATA"); !strings.HasPrefix(reply, "354") {
			t.Fatalf("DATA: %q", reply)
		}
		s.conn.Write([]byte("From: x@example.org\r\nTo: " + lucia + "\r\nSubject: grande\r\n\r\n" + body))
		return s
	}
	first := begin(net.IPv4(127, 0, 0, 2))
	waitFor(t, "the first stranger's message to take its turn", time.Minute, func() (bool, error) {
		used, _ := turns.state()
		return used == 1, nil
	})
	second := begin(net.IPv4(127, 0, 0, 4))
	second.conn.Write([]byte(".\r\n"))
	waitFor(t, "the second stranger's message to wait for its turn", time.Minute, func() (bool, error) {
		_, waiting := turns.state()
		return waiting == 1, nil
	})
	// A known gestore's large busta is taken meanwhile.
	big := message(mario, lucia, "", "Seconda") + strings.ReplaceAll(body, "\r\n", "\n")
	if err := p.a.submit(t, mario, pw, []string{lucia}, big); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitFor(t, "the second busta in lucia's mailbox", time.Minute, func() (bool, error) {
		n := 0
		for _, m := range p.b.parsed(t, lucia) {
			if m.Kind == pec.KindBustaTrasporto {
				n++
			}
		}
		return n == 2, nil
	})
	if used, waiting := turns.state(); used != 1 || waiting != 1 {
		t.Errorf("turns: %d held, %d waiting; want the first stranger's held and the second's waiting", used, waiting)
	}
	// The first ends; the second gets its turn.
	first.conn.Write([]byte(".\r\n"))
	if reply, _ := readReply(first.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the first stranger's message: %q", reply)
	}
	if reply, _ := readReply(second.r); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("the second stranger's message: %q", reply)
	}
	if used, waiting := turns.state(); used != 0 || waiting != 0 {
		t.Errorf("turns at the end: %d held, %d waiting", used, waiting)
	}
}
