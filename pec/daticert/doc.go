// Package daticert reads and writes the dati di certificazione of a PEC
// message: the daticert.xml part that every ricevuta, avviso and busta di
// trasporto carries, defined by the DTD of RFC 6109 §4.4 (the allegato
// tecnico of the DM 2 novembre 2005).
//
// [Marshal] emits what the rules say: a document valid against the DTD, in
// UTF-8, laid out as the gestori in service lay it out (no DOCTYPE, four
// spaces of indentation), with the riferimento temporale written as giorno,
// ora and zona in Europe/Rome. [Parse] accepts what real gestori send:
// insignificant whitespace, any attribute order, a byte order mark,
// ISO-8859-1 or windows-1252 prologs, missing optional elements, and tipo
// values written with other case or with spaces or underscores for hyphens.
// It refuses hostile input with a clear error: documents larger than
// [MaxSize], nested deeper than [MaxDepth], or carrying a DTD internal subset
// (the vehicle of entity-expansion attacks).
//
// Names of the protocol (tipo, errore, mittente, destinatari, oggetto,
// gestore-emittente, identificativo, consegna, ricezione, errore-esteso) are
// kept in Italian as the rules name them; everything else is in English.
//
// The package never reads the clock: the riferimento temporale is always the
// caller's.
package daticert
