// Package imapserver serves the mailboxes of a [mailstore.Store] over IMAP4rev1
// (RFC 3501), so that titolari can read their PEC mail with any mail client.
//
// It is built on go-imap/v2's imapserver, which parses the protocol; this
// package supplies the sessions. A session authenticates with
// [mailstore.Store.Authenticate] (LOGIN or AUTHENTICATE PLAIN, only over TLS
// unless Options.InsecureAuth is set) and from then on reaches only the
// folders of the address it logged in as: there is no shared or other-user
// namespace. Besides the base protocol (STARTTLS, LIST, SELECT, EXAMINE,
// STATUS, FETCH, SEARCH, STORE, COPY, APPEND, EXPUNGE, CREATE, DELETE, RENAME,
// SUBSCRIBE, IDLE and the UID commands) it offers UIDPLUS, MOVE, NAMESPACE,
// CHILDREN and APPENDLIMIT.
//
// Each session keeps its client's view of the selected folder (the UIDs its
// sequence numbers stand for) and updates it from [mailstore.Store.Watch]:
// new messages, expunges and flag changes made by other sessions or by
// deliveries are announced at the end of the next command, or at once while
// the client idles.
package imapserver
