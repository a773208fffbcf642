// Package tsa speaks RFC 3161: a client for real time-stamping authorities,
// a built-in authority for the embedded default and for tests, and a token
// verifier that checks what the underlying parser does not (message imprint,
// nonce, signature, certificate chain and the critical timeStamping EKU).
package tsa
