// Package clamd is a client of clamd, the ClamAV scanning daemon, for the
// virus check that a PEC gestore runs on the messages it accepts and
// receives (RFC 6109: a virus found means an avviso di non accettazione per
// virus or a rilevazione virus, never a delivery).
//
// A [Client] speaks clamd's own protocol over a unix socket or TCP: Scan
// streams the data with zINSTREAM, in chunks, and Ping sends zPING. Each
// call opens its own connection, bounded by [Client.Timeout] and by the
// context, so a Client is safe for concurrent use and a clamd that stops
// answering costs at most one Timeout.
//
// A scan that did not complete is an error, never a clean [Result]: clamd
// unreachable, clamd answering "... ERROR" (its StreamMaxLength exceeded,
// for one), an answer that is not clamd's, or no answer in time. Data larger
// than [Client.MaxSize] is refused before it is sent, with an error wrapping
// [ErrTooLarge]; so is data that clamd itself finds too long.
package clamd
