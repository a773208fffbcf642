package tsa

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/connlimit"
)

// TestServeConnectionCap checks that Serve caps one address's connections:
// with two held, a third is closed without an answer.
func TestServeConnectionCap(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	a.limits = connlimit.Options{MaxPerAddress: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	if got := httpAnswer(t, ln.Addr().String(), 2); got != "" {
		t.Fatalf("a third connection from one address was answered %q, want it closed", got)
	}
}

// httpAnswer holds held idle connections to addr, then sends a request on
// another and returns the status line of its answer ("" if none).
func httpAnswer(t *testing.T, addr string, held int) string {
	t.Helper()
	for range held {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\n")) // a header not finished
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}
