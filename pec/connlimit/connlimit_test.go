package connlimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// holdServer accepts on ln, greets each connection with "220 ok" and holds
// it until the client closes it; then it closes it and reports on closed.
func holdServer(t *testing.T, ln net.Listener) (closed chan struct{}) {
	t.Helper()
	closed = make(chan struct{}, 10000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte("220 ok\r\n"))
				io.Copy(io.Discard, c)
				c.Close()
				closed <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return closed
}

// dialLine dials addr (from local, if not nil) and returns the connection
// and the first line the server sends ("" if it closes first).
func dialLine(t *testing.T, addr string, local net.Addr) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang fails, never a slow machine
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return c, strings.TrimSpace(line)
}

// TestCaps holds 1,000 idle connections against each cap in turn: the cap
// is held exactly, every excess connection is refused at once (with the
// refusal line), and a place freed, or another address, is served.
func TestCaps(t *testing.T) {
	const n = 1000
	tests := []struct {
		name      string
		opts      Options
		accepted  int
		otherHost bool // a connection from 127.0.0.2 is still served
	}{
		{"global", Options{MaxConns: 100, MaxPerAddress: -1}, 100, false},
		{"per address", Options{MaxConns: -1, MaxPerAddress: DefaultMaxPerAddress}, DefaultMaxPerAddress, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tt.opts.Refusal = []byte("421 4.7.0 too many connections\r\n")
			ln := NewListener(raw, tt.opts)
			closed := holdServer(t, ln)
			var held []net.Conn
			refused := 0
			for range n {
				c, line := dialLine(t, ln.Addr().String(), nil)
				switch {
				case line == "220 ok":
					held = append(held, c)
				case strings.HasPrefix(line, "421 4.7.0"):
					refused++
					c.Close()
				default:
					t.Fatalf("first line %q", line)
				}
			}
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			if len(held) != tt.accepted || refused != n-tt.accepted {
				t.Fatalf("%d accepted, %d refused; want %d and %d", len(held), refused, tt.accepted, n-tt.accepted)
			}
			if got := ln.Active(); got != tt.accepted {
				t.Errorf("Active() = %d, want %d", got, tt.accepted)
			}
			if tt.otherHost {
				local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
				c, line := dialLine(t, ln.Addr().String(), local)
				c.Close()
				if line != "220 ok" {
					t.Fatalf("a connection from another address got %q, want it served", line)
				}
				<-closed
			}
			// Free one place: the next connection is served.
			held[0].Close()
			held = held[1:]
			<-closed
			c, line := dialLine(t, ln.Addr().String(), nil)
			held = append(held, c)
			if line != "220 ok" {
				t.Fatalf("after a place was freed the next connection got %q", line)
			}
		})
	}
}

// TestCeiling checks that the ceiling bounds reads whatever deadline the
// protocol engine sets, and that moving it applies to a read in progress.
func TestCeiling(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := NewListener(raw, Options{Ceiling: 50 * time.Millisecond})
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The engine asks for an hour; the accept-time ceiling wins.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the ceiling: %v, want a deadline error", err)
	}
	lc, ok := FromConn(c)
	if !ok {
		t.Fatal("FromConn: not found")
	}
	// Lifted, the engine's own deadline (none) applies: the read waits for
	// the client's byte.
	lc.SetCeiling(time.Time{})
	c.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read with the ceiling lifted: %v", err)
	}
	// A ceiling set while a read is blocked ends that read.
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	lc.SetCeiling(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read in progress after SetCeiling(now): %v, want a deadline error", err)
	}
}

// flakyListener fails its first accepts with EMFILE.
type flakyListener struct {
	net.Listener
	fails int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// TestAcceptBackoff checks that running out of descriptors makes Accept
// pause, with growing pauses, instead of spinning or failing.
func TestAcceptBackoff(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := NewListener(&flakyListener{Listener: raw, fails: 10}, Options{})
	var mu sync.Mutex
	var pauses []time.Duration
	ln.sleep = func(d time.Duration) {
		mu.Lock()
		pauses = append(pauses, d)
		mu.Unlock()
	}
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	c.Close()
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	if len(pauses) != len(want) {
		t.Fatalf("pauses %v, want %d", pauses, len(want))
	}
	for i := range want {
		if pauses[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", pauses, want)
		}
	}
	// A closed listener is an error, at once.
	raw.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
}

func TestAddressKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 25}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff:1:2:3"), Port: 9}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 9}, "2001:db8:1:3::/64"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "/run/x.sock"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := AddressKey(tt.addr); got != tt.want {
			t.Errorf("AddressKey(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestEviction checks that over MaxConns a newcomer takes the place of the
// oldest connection still under its accept-time ceiling, once that one is
// old enough, and never of one whose session moved its ceiling.
func TestEviction(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, Options{MaxConns: 3, MaxPerAddress: -1, Ceiling: time.Hour,
		Refusal: []byte("421 4.7.0 too many connections\r\n")})
	defer ln.Close()
	var mu sync.Mutex
	now := time.Now()
	ln.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	accepted := make(chan *Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 ok\r\n"))
			accepted <- c.(*Conn)
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, line := dialLine(t, ln.Addr().String(), nil)
		defer c.Close()
		if line != "220 ok" {
			t.Fatalf("first line %q", line)
		}
		clients = append(clients, c)
	}
	servers := []*Conn{<-accepted, <-accepted, <-accepted}
	// All three are younger than evictAfter: the newcomer is refused.
	c, line := dialLine(t, ln.Addr().String(), nil)
	c.Close()
	if !strings.HasPrefix(line, "421 ") {
		t.Fatalf("with young connections only, a newcomer got %q, want refused", line)
	}
	// The first one's session moves on; time passes.
	servers[0].SetCeiling(time.Now().Add(time.Hour))
	mu.Lock()
	now = now.Add(evictAfter)
	mu.Unlock()
	c, line = dialLine(t, ln.Addr().String(), nil)
	defer c.Close()
	if line != "220 ok" {
		t.Fatalf("a newcomer over the cap got %q, want served in an idle one's place", line)
	}
	<-accepted
	// The second (the oldest still fresh) was closed; the first was not.
	clients[1].SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := clients[1].Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the evicted connection read %d bytes, %v", n, err)
	}
	if got := ln.Active(); got != 3 {
		t.Errorf("Active() = %d, want 3", got)
	}
	if _, err := servers[0].Write([]byte("x")); err != nil {
		t.Errorf("the connection whose session moved on was closed: %v", err)
	}
}
