// Package export answers queries over the ledger and produces evidence:
// log extracts for a titolare, reproduced receipts with evidence bundles, audit
// reports, and the offline verifier.
package export
