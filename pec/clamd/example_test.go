package clamd_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custode/custode/pec/clamd"
)

func ExampleClient_Scan() {
	c := &clamd.Client{Network: "unix", Address: "/run/clamav/clamd.ctl", Timeout: 10 * time.Second}
	msg := []byte("From: a@example.org\r\nSubject: hello\r\n\r\nhello\r\n")
	res, err := c.Scan(context.Background(), msg)
	switch {
	case errors.Is(err, clamd.ErrTooLarge):
		fmt.Println("too large to scan: refuse the message")
	case err != nil:
		fmt.Println("scan failed: answer 4xx and let the sender retry:", err)
	case res.Infected:
		fmt.Println("virus found:", res.Virus)
	default:
		fmt.Println("clean")
	}
}
