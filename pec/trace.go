package pec

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"
)

// Received describes one SMTP reception, for the Received trace field
// (RFC 5321 §4.4) that the punto di accesso and the punto di ricezione put
// at the top of every message they receive, as the gestori in service do.
type Received struct {
	// Helo is the name the client gave in EHLO (or HELO).
	Helo string
	// RemoteHost is the client's name by reverse DNS; empty means unknown.
	RemoteHost string
	// RemoteIP is the client's IP address.
	RemoteIP string
	// By is the receiving host's name.
	By string
	// With is the protocol (RFC 3848): ESMTP, ESMTPS (with TLS), ESMTPA
	// (authenticated) or ESMTPSA (both); empty means ESMTP.
	With string
	// ID is the reception's identifier: a queue id (NewQueueID) or the
	// identificativo.
	ID string
	// For is the recipient, written only when it is the only one: RFC
	// 5321 §7.6 warns that listing them discloses blind copies.
	For string
	// Time is when the message was received.
	Time time.Time
}

// Field returns the Received header field r describes, folded at clause
// boundaries and ending in CRLF:
//
//	Received: from HELO (RDNS [IP])
//		by HOST (Custode) with ESMTPSA id ID
//		for <RCPT>; Fri, 14 Nov 2025 18:26:30 +0100
//
// Every value the client chose (Helo) or that comes from the network
// (RemoteHost) is reduced to printable ASCII without white space,
// parentheses, brackets or angle brackets, so that no client can end the
// field, add another, or make the clauses read differently; an empty name
// becomes "unknown".
func (r Received) Field() string {
	with := traceToken(r.With, 16)
	if with == "unknown" {
		with = "ESMTP"
	}
	var b strings.Builder
	b.WriteString("Received: from " + traceToken(r.Helo, 255) +
		" (" + traceToken(r.RemoteHost, 255) + " [" + traceToken(r.RemoteIP, 64) + "])\r\n")
	b.WriteString("\tby " + traceToken(r.By, 255) + " (Custode) with " + with)
	if id := traceToken(r.ID, 255); r.ID != "" && id != "unknown" {
		b.WriteString(" id " + id)
	}
	b.WriteString("\r\n\t")
	if r.For != "" {
		b.WriteString("for <" + traceToken(r.For, 320) + ">")
	}
	b.WriteString("; " + r.Time.Format("Mon, 2 Jan 2006 15:04:05 -0700") + "\r\n")
	return b.String()
}

// traceToken returns s fit for one token of a Received field: at most max
// bytes of printable ASCII other than white space and ()[]<>;\", or
// "unknown" when nothing is left.
func traceToken(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || strings.ContainsRune(`()[]<>;\"`, r) {
			return -1
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	if s == "" {
		return "unknown"
	}
	return s
}

// NewQueueID returns a new random identifier for a reception, 12
// upper-case hex digits as Postfix's queue ids, for Received.ID.
func NewQueueID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
