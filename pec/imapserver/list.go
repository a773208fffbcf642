package imapserver

import (
	"strings"

	"github.com/custode/custode/pec/mailstore"
)

// maxPattern bounds LIST patterns: folder names are at most 255 bytes.
const maxPattern = 1024

// matchList reports whether folder name matches a LIST reference and pattern
// (RFC 9051 section 6.3.9): "*" matches anything, "%" anything but the
// hierarchy delimiter, and a pattern starting with the delimiter ignores the
// reference. It is go-imap's MatchList without its exponential worst case.
func matchList(name, ref, pattern string) bool {
	const delim = string(mailstore.Delimiter)
	if len(pattern) > maxPattern || len(ref) > maxPattern {
		return false
	}
	if p, ok := strings.CutPrefix(pattern, delim); ok {
		ref, pattern = "", p
	}
	if ref != "" {
		if !strings.HasSuffix(ref, delim) {
			ref += delim
		}
		rest, ok := strings.CutPrefix(name, ref)
		if !ok {
			return false
		}
		name = rest
	}
	return glob(name, pattern)
}

// glob matches name against pattern in O(len(name)*len(pattern)).
func glob(name, pattern string) bool {
	prev := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		for j := 0; j <= len(name); j++ {
			switch c {
			case '*':
				cur[j] = prev[j] || (j > 0 && cur[j-1])
			case '%':
				cur[j] = prev[j] || (j > 0 && cur[j-1] && name[j-1] != mailstore.Delimiter)
			default:
				cur[j] = j > 0 && prev[j-1] && name[j-1] == c
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(name)]
}

// matchAny reports whether name matches one of the patterns. INBOX is
// case-insensitive, in patterns too.
func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if matchList(name, ref, p) {
			return true
		}
		if strings.HasPrefix(name, mailstore.Inbox) && ref == "" && len(p) >= len(mailstore.Inbox) &&
			strings.EqualFold(p[:len(mailstore.Inbox)], mailstore.Inbox) &&
			matchList(name, ref, mailstore.Inbox+p[len(mailstore.Inbox):]) {
			return true
		}
	}
	return false
}
