package connlimit_test

import (
	"fmt"
	"net"
	"time"

	"github.com/custode/custode/pec/connlimit"
)

// An SMTP listener: at most 2,000 connections, 20 per client address, the
// excess told why; a client has a minute to get as far as the session
// allows, which then moves the ceiling.
func ExampleNewListener() {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ln := connlimit.NewListener(raw, connlimit.Options{
		Refusal: []byte("421 4.7.0 Too many connections, try again later\r\n"),
		Ceiling: time.Minute,
	})
	defer ln.Close()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// Once the client has authenticated, its session may last half an
	// hour from now, whatever read deadlines the protocol engine sets.
	if lc, ok := connlimit.FromConn(c); ok {
		lc.SetCeiling(time.Now().Add(30 * time.Minute))
		fmt.Println(lc.Key(), ln.Active())
	}
	// Output: 127.0.0.1 1
}
