// Package mailaddr gives a PEC mailbox address its one canonical form, the
// form in which Custode stores, compares and authorizes addresses.
//
// Custode does not handle SMTPUTF8 end to end, so a mailbox address is
// ASCII. Its canonical form is
//
//	local@domain
//
// where local is an RFC 5322 dot-atom of at most 64 bytes (atext and
// single inner dots: no quoted local part, no leading, trailing or double
// dot), domain is one or more LDH labels (letters, digits and inner
// hyphens, 1 to 63 bytes each) separated by single dots, with no trailing
// dot and no address literal, and the whole is at most 254 bytes. ASCII
// letters are lower case: A-Z, and only A-Z, are mapped to a-z. Nothing
// else is mapped: no Unicode case folding or normalisation, no stripping of
// spaces, dots or subaddresses.
//
// The rules a caller can rely on:
//
//   - Any byte outside printable ASCII (a control character, DEL, any byte
//     of a non-ASCII character such as U+017F 'ſ', the Kelvin sign U+212A,
//     fullwidth or Cyrillic letters) makes the address invalid. It is never
//     mapped to a look-alike ASCII letter.
//   - A trailing dot in the domain ("sara@pec.example.it.") makes the
//     address invalid. It is not stripped: the absolute-name dot belongs to
//     DNS, not to mail addresses (RFC 5321 section 2.3.5), and one rule that
//     refuses is simpler to audit than one that rewrites.
//   - Plus-addressing does not exist for a PEC mailbox: '+' is an ordinary
//     atext character, so "sara+x@d" is a mailbox of its own that never
//     matches "sara@d".
//   - Two addresses name the same mailbox exactly when their canonical
//     forms are equal byte for byte. Compare with == after [Canonical], or
//     with [Same]; never with strings.EqualFold or strings.ToLower, which
//     fold non-ASCII characters onto ASCII ones.
//
// [Skeleton] and [Confusable] go further than identity: they tell apart two
// different canonical addresses that a reader could take for one another
// ("rn" and "m", "0" and "o", "1", "i" and "l", "vv" and "w"), so that a new
// mailbox that looks like an existing one can be refused.
package mailaddr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits of a canonical address, in bytes.
const (
	MaxLength      = 254 // the whole address (RFC 5321 path less the brackets)
	MaxLocalLength = 64  // the local part (RFC 5321 section 4.5.3.1.1)
	MaxLabelLength = 63  // one domain label (RFC 1035)
)

// ErrInvalid reports an address that has no canonical form. The errors of
// [Canonical] wrap it.
var ErrInvalid = errors.New("not a canonical mailbox address")

// Canonical returns the canonical form of address (see the package
// documentation), or an error wrapping [ErrInvalid] that says why it has
// none. Canonical(Canonical(a)) == Canonical(a) for every a that has one.
// The error quotes the address with strconv.Quote semantics, escaping
// non-ASCII and control characters, and clipped to a bounded length.
func Canonical(address string) (string, error) {
	if address == "" {
		return "", fmt.Errorf("mailaddr: empty address: %w", ErrInvalid)
	}
	if len(address) > MaxLength {
		return "", fmt.Errorf("mailaddr: address %s longer than %d bytes: %w", quote(address), MaxLength, ErrInvalid)
	}
	for i := 0; i < len(address); i++ {
		if c := address[i]; c < 0x20 || c >= 0x7f {
			what := "a non-ASCII byte"
			if c < 0x20 || c == 0x7f {
				what = "a control character"
			}
			return "", fmt.Errorf("mailaddr: address %s has %s at byte %d (mailbox addresses are ASCII): %w", quote(address), what, i, ErrInvalid)
		}
	}
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return "", fmt.Errorf("mailaddr: address %s has no @: %w", quote(address), ErrInvalid)
	}
	local, domain := address[:at], address[at+1:]
	if local == "" || domain == "" {
		return "", fmt.Errorf("mailaddr: address %s has an empty local part or domain: %w", quote(address), ErrInvalid)
	}
	if local[0] == '"' {
		return "", fmt.Errorf("mailaddr: address %s has a quoted local part: %w", quote(address), ErrInvalid)
	}
	if len(local) > MaxLocalLength {
		return "", fmt.Errorf("mailaddr: address %s: local part longer than %d bytes: %w", quote(address), MaxLocalLength, ErrInvalid)
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", fmt.Errorf("mailaddr: address %s: misplaced dot in the local part: %w", quote(address), ErrInvalid)
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c != '.' && !isAtext(c) {
			return "", fmt.Errorf("mailaddr: address %s: character %q not allowed in the local part: %w", quote(address), c, ErrInvalid)
		}
	}
	if domain[len(domain)-1] == '.' {
		return "", fmt.Errorf("mailaddr: address %s: trailing dot in the domain: %w", quote(address), ErrInvalid)
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" {
			return "", fmt.Errorf("mailaddr: address %s: empty label in the domain: %w", quote(address), ErrInvalid)
		}
		if len(label) > MaxLabelLength {
			return "", fmt.Errorf("mailaddr: address %s: domain label longer than %d bytes: %w", quote(address), MaxLabelLength, ErrInvalid)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("mailaddr: address %s: domain label begins or ends with a hyphen: %w", quote(address), ErrInvalid)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(isLetter(c) || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("mailaddr: address %s: character %q not allowed in the domain: %w", quote(address), c, ErrInvalid)
			}
		}
	}
	return lowerASCII(address), nil
}

// Valid reports whether address has a canonical form.
func Valid(address string) bool {
	_, err := Canonical(address)
	return err == nil
}

// IsCanonical reports whether address is already in canonical form.
func IsCanonical(address string) bool {
	c, err := Canonical(address)
	return err == nil && c == address
}

// Same reports whether a and b name the same mailbox: both have a
// canonical form and the two are equal byte for byte. An address without a
// canonical form is the same only as itself, byte for byte, so that a
// stored non-canonical value (an old record) still matches exactly the
// records that spell it the same way and nothing else. In particular a
// canonical address is never the same as a non-canonical one.
func Same(a, b string) bool {
	ca, errA := Canonical(a)
	cb, errB := Canonical(b)
	switch {
	case errA == nil && errB == nil:
		return ca == cb
	case errA != nil && errB != nil:
		return a == b
	}
	return false
}

// Domain returns the domain of a canonical address (the part after the
// last @), or "" if address has none.
func Domain(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return ""
	}
	return address[at+1:]
}

// confusables maps each character of a canonical address that a reader
// can take for another to its prototype, in the manner of the UTS #39
// confusables table restricted to what remains after canonicalisation
// (lower-case ASCII). Characters not listed are their own prototype.
var confusables = [128]string{
	'0': "o",
	'1': "l",
	'i': "l",
	'|': "l",
	'!': "l",
	'm': "rn",
	'w': "vv",
	'd': "cl",
	'`': "'",
}

// Skeleton returns the skeleton of a canonical address, in the spirit of
// UTS #39 section 4: each character is replaced by its prototype, so that
// two addresses a reader could confuse have the same skeleton. The
// replacements, on lower-case ASCII, are exactly:
//
//	0 -> o     1, i, |, ! -> l     m -> rn     w -> vv     d -> cl     ` -> '
//
// (so "rn" and "m", "vv" and "w", "cl" and "d", "0" and "o", and "1", "i"
// and "l" collide). Non-ASCII cannot occur in a canonical address, so
// cross-script confusables (Cyrillic 'а', fullwidth 'ｓ', U+017F 'ſ') are
// excluded by [Canonical] rather than mapped here. The skeleton is for
// comparison only: it is not an address and is never stored as one. A
// non-canonical argument gives the skeleton of its bytes as they are.
func Skeleton(address string) string {
	var b strings.Builder
	b.Grow(len(address) + 8)
	for i := 0; i < len(address); i++ {
		c := address[i]
		if c < 0x80 && confusables[c] != "" {
			b.WriteString(confusables[c])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Confusable reports whether two different canonical addresses have the
// same [Skeleton]: a reader could take one for the other. An address is
// not confusable with itself.
func Confusable(a, b string) bool {
	return a != b && Skeleton(a) == Skeleton(b)
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// lowerASCII maps A-Z to a-z and leaves every other byte alone.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// quote quotes s for an error message, ASCII only and clipped.
func quote(s string) string {
	const n = 80
	if len(s) > n {
		return strconv.QuoteToASCII(s[:n]) + "..."
	}
	return strconv.QuoteToASCII(s)
}
