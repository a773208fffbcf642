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
// The server uses go-smtp for its SMTP points; mailboxes are in
// pec/mailstore and served over IMAP by pec/imapserver, outgoing messages
// wait in pec/queue, and viruses are found by clamd (pec/clamd).
package gestore
