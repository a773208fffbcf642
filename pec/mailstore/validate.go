package mailstore

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/custode/custode/pec/mailaddr"
)

// Inbox is the name of the folder every mailbox has and deliveries go to by
// default. Its name is case-insensitive.
const Inbox = "INBOX"

// Delimiter separates the levels of folder names ("Archivio/2026").
const Delimiter = '/'

// System flags (RFC 9051 section 2.3.2). Flags are case-insensitive; the
// store keeps system flags in this spelling and keywords as first given.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

var systemFlags = []string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft}

const (
	maxFolderSize = 255
	maxFlagSize   = 128
)

// NormalizeAddress returns address in the form the store keys it by, the
// canonical form of package mailaddr (ASCII, lower case, no trailing dot,
// no quoted local part), or an error wrapping ErrInvalid (and
// mailaddr.ErrInvalid) that says why it has none. Addresses are compared
// byte for byte in that form: no Unicode folding ever makes two of them
// equal.
func NormalizeAddress(address string) (string, error) {
	a, err := mailaddr.Canonical(address)
	if err != nil {
		return "", fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return a, nil
}

// NormalizeFolder returns the canonical form of a folder name ("" and any
// spelling of INBOX give "INBOX", and an INBOX/ prefix is spelled INBOX/), or
// an error wrapping ErrInvalid. A name is at most 255 bytes of UTF-8, has no
// control characters, no IMAP wildcards (* and %), and no empty level.
func NormalizeFolder(name string) (string, error) {
	if name == "" || strings.EqualFold(name, Inbox) {
		return Inbox, nil
	}
	if len(name) > maxFolderSize {
		return "", fmt.Errorf("folder name longer than %d bytes: %w", maxFolderSize, ErrInvalid)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("folder name %q is not UTF-8: %w", name, ErrInvalid)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '*' || r == '%' || (r >= 0x80 && r < 0xa0) {
			return "", fmt.Errorf("folder name %q: character %q not allowed: %w", name, r, ErrInvalid)
		}
	}
	for level := range strings.SplitSeq(name, string(Delimiter)) {
		if level == "" {
			return "", fmt.Errorf("folder name %q has an empty level: %w", name, ErrInvalid)
		}
	}
	if len(name) > len(Inbox) && strings.EqualFold(name[:len(Inbox)+1], Inbox+string(Delimiter)) {
		name = Inbox + name[len(Inbox):]
	}
	return name, nil
}

// canonicalFlags validates flags and returns them deduplicated
// (case-insensitively), system flags in their canonical spelling. \Recent,
// which no one can set, is dropped.
func canonicalFlags(flags []string) ([]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		c, err := canonicalFlag(f)
		if err != nil {
			return nil, err
		}
		if c == "" || hasFlag(out, c) {
			continue
		}
		out = append(out, c)
	}
	if len(out) > MaxFlags {
		return nil, fmt.Errorf("more than %d flags: %w", MaxFlags, ErrInvalid)
	}
	return out, nil
}

func canonicalFlag(f string) (string, error) {
	if f == "" || len(f) > maxFlagSize {
		return "", fmt.Errorf("flag %q: bad length: %w", clip(f), ErrInvalid)
	}
	if f[0] == '\\' {
		if strings.EqualFold(f, `\Recent`) {
			return "", nil
		}
		for _, s := range systemFlags {
			if strings.EqualFold(f, s) {
				return s, nil
			}
		}
		return "", fmt.Errorf("unknown system flag %q: %w", clip(f), ErrInvalid)
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		// RFC 9051 atom, less resp-specials.
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return "", fmt.Errorf("flag %q: character %q not allowed: %w", clip(f), c, ErrInvalid)
		}
	}
	return f, nil
}

// hasFlag reports whether flags holds f, case-insensitively.
func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// HasFlag reports whether the message has flag f (case-insensitively).
func (m Message) HasFlag(f string) bool { return hasFlag(m.Flags, f) }

// clip shortens s for error messages.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..." + strconv.Itoa(len(s)-n) + " more bytes"
}
