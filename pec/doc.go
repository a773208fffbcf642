// Package pec is the PEC protocol of RFC 6109 (the technical rules of the
// DM 2 novembre 2005): message kinds, building and parsing every busta,
// ricevuta and avviso, with no network I/O. Servers live in sub-packages.
//
// # Building
//
// A Gestore (NewGestore) is a gestore as a signer: its name, its mail
// domain, its signing certificate and key, and a source of msgids. A
// Transaction describes the original message and carries the single
// riferimento temporale of the processing (RFC 6109 §4.1): the punto di
// accesso gets one from Gestore.NewTransaction, the punto di ricezione and
// the punto di consegna from TransactionFromBusta. Each method of Gestore
// builds one message type of RFC 6109 §3 (Accettazione, NonAccettazione,
// NonAccettazioneVirus, BustaTrasporto, PreavvisoMancataConsegna,
// PresaInCarico, BustaAnomalia, RilevazioneVirus, MancataConsegnaVirus,
// AvvenutaConsegna in its three forms, MancataConsegna) with the header
// fields and Subject prefix the rules fix, an Italian text (text/plain and
// text/html), daticert.xml (pec/daticert), postacert.eml where the rules
// want the original, and a SHA-256 S/MIME signature (pec/smime). Builders
// never read the clock and never reach shared state.
//
// # Trace fields
//
// Received builds the trace field (RFC 5321 §4.4) a server puts on a
// message it receives over SMTP; Envelope.Trace puts the punto di
// accesso's at the top of the original, whence the busta di trasporto
// inherits it, outside its signed entity, as the gestori in service do.
//
// # Reading
//
// Parse classifies any message, tolerant of what real gestori send, and
// returns its Kind, header, daticert, original and signer, listing every
// inconsistency in Message.Problems instead of guessing. It is bounded in
// size, depth and parts, and never panics. Message.Verify checks the
// signature; Inspect does both and returns a Report, printable as text or
// JSON, which is what custode pec inspect shows.
package pec
