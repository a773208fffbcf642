// Package pki makes and loads the keys and certificates a gestore runs with:
// a development CA, the gestore's signing certificate in the profile of
// RFC 6109 §5.5, and a time-stamping authority certificate. Production loads
// real keys and certificates from files; the development set exists so that
// the embedded default and the tests run with no outside PKI.
package pki
