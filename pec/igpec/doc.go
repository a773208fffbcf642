// Package igpec is the indice dei gestori di posta elettronica certificata
// (IGPEC) of RFC 6109 §4.5, §5.6 and §7: the directory, distributed as LDIF,
// in which every gestore lists its name, the SHA-1 hashes and DER bytes of
// its signing certificates, the PEC domains it manages, its service mailbox
// (mailReceipt) and the URL of its own signed LDIF.
//
// [ParseLDIF] reads the directory (RFC 2849 content records: folded lines,
// base64 values, comments) into an [Index], an immutable value safe for
// concurrent use. The Index answers the questions the PEC points ask:
//
//   - which gestore signed this message: [Index.ProviderByCertificate] looks
//     the SHA-1 of the signing certificate up among the
//     providerCertificateHash values, then checks the certificate itself
//     against the record's providerCertificate values (RFC 6109 §2.2.2);
//   - is this recipient a PEC mailbox: [Index.RecipientTipo] gives
//     certificato or esterno from the managedDomains (RFC 6109 §2.2.1);
//   - where does the presa in carico go: [Provider.MailReceipt];
//   - does the signer manage the sender's domain: [Provider.Manages]
//     (RFC 6109 §7).
//
// [WriteLDIF] writes our own gestore's record for publication.
//
// The package does no I/O beyond the readers and writers it is given: it
// neither fetches URLs nor verifies the PKCS#7 signature around the LDIF,
// which is the caller's job.
package igpec
