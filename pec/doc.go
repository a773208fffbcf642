// Package pec is the PEC protocol of RFC 6109 (the technical rules of the
// DM 2 novembre 2005): message kinds, building and parsing every busta,
// ricevuta and avviso, with no network I/O. Servers live in sub-packages.
package pec
