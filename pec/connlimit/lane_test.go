package connlimit

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// frozenClock is a listener's clock that moves only when told.
type frozenClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *frozenClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *frozenClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestPreferredLane checks that a preferred client gets in while the
// general lane is full, of young connections (which no newcomer may
// evict) or of sessions under way (which none ever may); that its lane
// has a cap of its own, past which it is counted as anyone else; and that
// no newcomer evicts a connection of the preferred lane.
func TestPreferredLane(t *testing.T) {
	preferred := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}
	stranger := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	tests := []struct {
		name    string
		ceiling time.Duration // with it, the strangers' connections are fresh and young
	}{
		{"sessions under way", 0},
		{"young idle connections", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := NewListener(raw, Options{MaxConns: 2, MaxPerAddress: -1, MaxPreferred: 1, Ceiling: tt.ceiling,
				Refusal:   []byte("421 4.7.0 too many connections\r\n"),
				Preferred: func(key string) bool { return key == "127.0.0.3" }})
			ln.now = (&frozenClock{t: time.Now()}).now // the strangers' stay young
			closed := holdServer(t, ln)
			addr := ln.Addr().String()
			dial := func(local net.Addr) (net.Conn, string) {
				c, line := dialLine(t, addr, local)
				t.Cleanup(func() { c.Close() })
				return c, line
			}
			var strangers []net.Conn
			for range 2 {
				c, line := dial(stranger)
				if line != "220 ok" {
					t.Fatalf("first line %q", line)
				}
				strangers = append(strangers, c)
			}
			if _, line := dial(stranger); !strings.HasPrefix(line, "421 ") {
				t.Fatalf("a stranger over MaxConns got %q, want refused", line)
			}
			first, line := dial(preferred)
			if line != "220 ok" {
				t.Fatalf("a preferred client with the general lane full got %q, want served", line)
			}
			if got := ln.Active(); got != 3 {
				t.Errorf("Active() = %d, want 3", got)
			}
			// The preferred lane is full: the next one is counted as
			// anyone else's, and the general lane has no room.
			if _, line := dial(preferred); !strings.HasPrefix(line, "421 ") {
				t.Fatalf("a preferred client over MaxPreferred, general lane full, got %q, want refused", line)
			}
			// A place of the general lane freed: the preferred client
			// takes it.
			strangers[0].Close()
			<-closed
			if _, line := dial(preferred); line != "220 ok" {
				t.Fatalf("a preferred client with a general place free got %q, want served", line)
			}
			// The first preferred connection was never taken over.
			if _, err := first.Write([]byte("x")); err != nil {
				t.Errorf("the preferred connection: %v", err)
			}
			select {
			case <-closed:
				t.Errorf("a connection was closed that should be held")
			default:
			}
		})
	}
}

// TestPreferredNotEvicted checks that a newcomer over MaxConns takes the
// place of an old fresh connection of the general lane, never of one of
// the preferred lane, however old.
func TestPreferredNotEvicted(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, Options{MaxConns: 1, MaxPerAddress: -1, Ceiling: time.Hour,
		Refusal:   []byte("421 4.7.0 too many connections\r\n"),
		Preferred: func(key string) bool { return key == "127.0.0.3" }})
	clock := &frozenClock{t: time.Now()}
	ln.now = clock.now
	closed := holdServer(t, ln)
	addr := ln.Addr().String()
	p, line := dialLine(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
	defer p.Close()
	if line != "220 ok" {
		t.Fatalf("preferred: %q", line)
	}
	g, line := dialLine(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	defer g.Close()
	if line != "220 ok" {
		t.Fatalf("stranger: %q", line)
	}
	// Newcomers wait until the fresh ones are old enough; then the
	// stranger's connection, fresh and old, is the one taken over.
	clock.advance(evictAfter)
	n, line := dialLine(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)})
	defer n.Close()
	if line != "220 ok" {
		t.Fatalf("a newcomer with an old fresh connection to take over got %q", line)
	}
	<-closed
	g.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 64)
	if n, err := g.Read(buf); n != 0 || err == nil {
		t.Fatalf("the stranger's connection read %d bytes, %v; want it closed", n, err)
	}
	if _, err := p.Write([]byte("x")); err != nil {
		t.Errorf("the preferred connection: %v", err)
	}
	// Both are old and fresh now, the newcomer's too: the next takes the
	// newcomer's place, not the preferred one's.
	clock.advance(evictAfter)
	m, line := dialLine(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)})
	defer m.Close()
	if line != "220 ok" {
		t.Fatalf("a second newcomer got %q", line)
	}
	<-closed
	p.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := p.Read(buf); err == nil || !isTimeout(err) {
		t.Fatalf("the preferred connection, read: %v; want it open (a timeout)", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
