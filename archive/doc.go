// Package archive is WORM (write once, read many) object storage for sealed
// ledger segments, signed checkpoints and the archivio di sicurezza.
//
// It defines one [Store] interface and the rules every driver obeys; where
// the bytes go is a driver's business:
//
//   - archive/s3store keeps objects in an S3 bucket with Object Lock through
//     minio-go (MinIO, versitygw, AWS S3 or any S3 with Object Lock). The
//     server enforces the lock: COMPLIANCE mode cannot be shortened or
//     removed by anyone, including the bucket owner.
//   - archive/localstore keeps objects in a local directory, the embedded
//     default. It enforces the same rules in code only, which is weaker than
//     real WORM: anyone with write access to the directory (root, or the
//     service user) can still alter or delete the files.
//
// Both pass the conformance suite in archive/archivetest.
//
// # Contract
//
// An object is written once with a retention mode and a retain-until date
// and is never overwritten: [Store.Put] refuses a key that already holds a
// version ([ErrExists]). Keys of immutable content should be derived from
// the content with [ContentKey], so a second write of the same bytes is
// harmless. Every object carries the SHA-256 of its bytes, checked by the
// server on write where it can and by [Store.Get] on every read; a mismatch
// is [ErrChecksum] and the bytes are never returned.
//
// Versions are explicit. On S3 a client other than ours can still write a
// new version of a locked key or a delete marker; the locked version
// survives and remains readable by its version id. Readers that hold a
// version id (returned by Put and List) MUST use it; an empty version id
// means the first (oldest) version of the key, which is the one a Store
// wrote, never a later one.
//
// Anything the lock forbids (deleting a version before its retain-until or
// while a legal hold is on, shortening a retention, weakening its mode) is
// refused with a [*RefusedError], which matches [ErrWORM] under [errors.Is],
// whichever way the server says it (MinIO answers HTTP 400 InvalidRequest,
// AWS and versitygw 403 AccessDenied).
package archive
