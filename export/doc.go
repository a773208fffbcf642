// Package export answers queries over the ledger and produces evidence:
// log extracts for a titolare, reproduced receipts with evidence bundles, and audit
// reports. The offline verifier of bundles and extracts is package
// ledger/verify/bundle, which links no database; the verifying names here
// (VerifyBundle, VerifyReport, ...) forward to it.
package export
