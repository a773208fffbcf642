//go:build !linux

package ledger

import "os"

// fdatasync makes the data written to f durable.
func fdatasync(f *os.File) error { return f.Sync() }
