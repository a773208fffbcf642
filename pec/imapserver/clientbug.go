package imapserver

import (
	"sync"
	_ "unsafe" // go:linkname, to correct go-imap's reply to commands it cannot decode

	"github.com/emersion/go-imap/v2"
	_ "github.com/emersion/go-imap/v2/imapserver" // the variable linked below
)

// goimapInternalError is go-imap's reply to a command whose handling
// failed with an error that is neither an *imap.Error nor a syntax error.
// This package's sessions answer every failure of theirs with an
// *imap.Error, so go-imap's own decoder is what gives that reply: to a
// mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3), a
// sequence set that does not parse, a command over go-imap's size limit.
// Those are the client's errors, and go-imap v2.0.0-beta.8 has no hook to
// answer them, so the reply is corrected where go-imap keeps it.
//
//go:linkname goimapInternalError github.com/emersion/go-imap/v2/imapserver.internalServerErrorResp
var goimapInternalError *imap.StatusResponse

var fixClientBug sync.Once

// clientBugReply is the reply those commands get instead of
// "NO [SERVERBUG] Internal server error".
var clientBugReply = imap.StatusResponse{
	Type: imap.StatusResponseTypeBad,
	Code: imap.ResponseCodeClientBug,
	Text: "Invalid argument: a mailbox name that is not modified UTF-7 (RFC 3501 5.1.3), or a malformed number set",
}

// correctClientBugReply makes go-imap answer commands it cannot decode with
// clientBugReply. It is idempotent.
func correctClientBugReply() {
	fixClientBug.Do(func() {
		if goimapInternalError != nil {
			*goimapInternalError = clientBugReply
		}
	})
}
