// Package smime signs and verifies PEC messages as S/MIME multipart/signed
// entities (RFC 5751, RFC 1847) with a detached CMS SignedData signature
// (RFC 5652), as RFC 6109 §2.1 requires of every message a PEC gestore emits.
//
// [Sign] and [SignMessage] always sign with SHA-256 and embed the signer
// certificate and its chain. [Verify] accepts what real gestori send: LF or
// CRLF line endings, micalg=sha1 or sha-256, the x-pkcs7 and pkcs7 signature
// types, SHA-1 or SHA-2 CMS digests. It checks the signature over the exact
// signed bytes, the certificate chain at an explicit time, and that the
// signer certificate carries the address in the message's From field.
//
// Every input is bounded before it is parsed: the message size
// ([DefaultMaxMessageSize]), the MIME nesting depth ([DefaultMaxDepth]), the
// decoded signature size ([MaxSignatureSize]) and the nesting of its ASN.1
// encoding. A crafted, deeply nested signature would otherwise overflow the
// goroutine stack inside the CMS parser, a fatal error that recover cannot
// catch.
package smime
