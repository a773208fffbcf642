//go:build !linux

package diskspace

import "log/slog"

// A Preallocator keeps the blocks of badger's memory-mapped files in one
// directory allocated. This system has no inotify(7) nor fallocate(2): it
// does nothing, and a full disk can stop the process.
type Preallocator struct{}

// Preallocate returns a Preallocator that does nothing on this system.
func Preallocate(dir string, log *slog.Logger) (*Preallocator, error) {
	return &Preallocator{}, nil
}

// Close does nothing.
func (p *Preallocator) Close() error { return nil }

// Sparse returns nothing.
func (p *Preallocator) Sparse() map[string]error { return nil }
