// Package archive is WORM object storage for sealed ledger segments and the
// archivio di sicurezza: one Store interface with an S3 Object Lock driver and
// a local directory driver.
package archive
