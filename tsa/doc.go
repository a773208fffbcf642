// Package tsa speaks RFC 3161: a client for real time-stamping authorities,
// a built-in authority for the embedded default and for tests, and a token
// verifier that checks what the underlying parser does not (message imprint,
// nonce, signature, certificate chain and the critical timeStamping EKU).
//
// It also time-stamps CMS signatures (CAdES-T, RFC 3161 Appendix A):
// StampSignature adds a token over a SignerInfo's signature value as the
// unsigned attribute id-aa-signatureTimeStampToken, and
// VerifySignatureTimestamp checks it and returns its time, the time at
// which the signature is to be validated.
package tsa
