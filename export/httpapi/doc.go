// Package httpapi serves the archive over an authenticated HTTP API: JSON
// queries of the ledger, a titolare's log extract, the evidence bundle of a
// ricevuta and the audit report, described by an OpenAPI 3 document served
// at GET /openapi.json.
//
// Titolari authenticate with their mailbox credentials (HTTP Basic);
// operators, auditors and legal users with a bearer token (see
// [ParseTokens] for the token file) or a client certificate (mTLS, see
// [TLSConfig]). What each may see is decided per request from the current
// policy's roles and the legal holds. Every query and export, allowed or
// not, is recorded in the ledger before it is answered.
//
// A titolare's mailbox is compared with the mittente and destinatari of
// entries, with hold scopes and with the mailbox parameter in the
// canonical form of package mailaddr, byte for byte: no Unicode case
// folding ("ſara" is not "sara"), no trailing dot, no subaddress ("sara+x"
// is not "sara"). An entry or identificativo the principal may not see is
// answered 404 exactly as one that does not exist.
//
// A titolare sees the entries that [export.Concerns] their mailbox: their
// own transactions as mittente in full; as destinatario, only the
// avvenuta-consegna whose consegna is their mailbox, the presa-in-carico
// whose ricezione names it and the busta-anomalia delivered to it, never
// the sender's accettazione, non accettazione, busta, errori or virus
// entries (export/BUNDLE.md §7).
package httpapi
