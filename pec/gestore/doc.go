// Package gestore is the server of a PEC gestore: the punto di accesso,
// the punto di ricezione and the punto di consegna of RFC 6109 §3, the
// deliveries of the outbound queue, and the tracker that emits the avvisi
// di mancata consegna per superamento dei tempi massimi.
//
// Every processing step follows one rule: the messages it emits are first
// queued durably but held, then its events are appended to the ledger, and
// only then does the server answer 250 (or, for a refusal, 554) and let
// the queue send them. A queued message is sent only once the ledger holds
// an entry with its SHA-256; one left by a step that crashed before its
// append is dropped at the next start, since it was never acknowledged.
// The ledger is also the tracker's state, so a restart loses no deadline,
// and the punto di ricezione consults it to take a busta in charge only
// once when a sender retries after a lost reply; deliveries into the
// mailbox store are idempotent on a key derived from the transaction.
//
// # Refusals, replays and the queue
//
// Every reply 4xx or 5xx that the punto di accesso or the punto di
// ricezione gives to MAIL, RCPT or DATA is recorded in the ledger: one
// entry of kind refusal (ledger.KindRefusal) per transaction that had
// any, with the codes and reasons, written when the transaction ends and,
// for a refused DATA, before the reply; the rate of such entries is
// bounded, and the suppressed ones counted (see recordingSession). A reply
// never carries the text of an internal error. 5xx is for what can never
// succeed, 4xx only for what may succeed later.
//
// The punto di ricezione refuses at RCPT (550 5.1.1) the addresses of
// our domains that no mailbox of ours has, and, from senders outside PEC
// domains, those that are not a mailbox; a busta from a gestore for such a
// recipient gets its avviso di mancata consegna. A message our gestore
// signed that comes back from outside (a replay) becomes a busta di
// anomalia. A busta di anomalia always parses back, whatever it wraps
// (see anomalia).
//
// # Outcomes and replies
//
// The RFC 6109 engine (accept, receive and the steps they call) speaks no
// SMTP: it returns an Outcome, whose Reason says what happened, whose
// Testo is the Italian sentence an avviso states for it (from one table,
// never an internal error's text) and whose Detail is the technical cause,
// for the logs only. The SMTP sessions map an outcome to its reply in one
// place (replies.go), in English with the enhanced status codes of RFC
// 3463: 530 5.7.0 for MAIL before AUTH (RFC 4954), 250 2.0.0 "Ok: queued
// as IDENTIFICATIVO" at the end of an accepted DATA, at both points, and
// a refusal after which an avviso di non accettazione was sent says so,
// with the avviso's identificativo. The in-process delivery of the queue
// maps the same outcome to a queue outcome: permanent or temporary. The
// replies to MAIL and RCPT that succeed are go-smtp's own, which it does
// not let a server choose.
//
// In the queue, one item's failures never delay another: only a remote
// destination that cannot be reached is backed off, never the local one.
// A message the gestore cannot deliver, or has not delivered within
// MaxQueueAge (24 hours, the second limit of RFC 6109 §3.1.6), leaves the
// queue with its drop recorded (a refusal entry whose punto is "coda").
//
// # Viruses
//
// With a Scanner, every message submitted and every busta received is
// scanned; without one (ScannerConfigured reports it) nothing is, and
// custode serve warns. A message found infected is kept first in the
// Quarantine, if there is one (archive/quarantine: WORM, 30 months), then
// the avviso is queued and its ledger entry, with the details
// "quarantena" (the object's key) and "sha256_quarantena", appended, and
// only then is the refusal answered; a quarantine that fails gives a
// temporary error and records nothing.
//
// The server uses go-smtp for its SMTP points; mailboxes are in
// pec/mailstore and served over IMAP by pec/imapserver, outgoing messages
// wait in pec/queue, and viruses are found by clamd (pec/clamd).
package gestore
