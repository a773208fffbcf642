package diskspace

import (
	"fmt"
	"syscall"
)

// DefaultReserve is the free space a Guard keeps by default: room for
// badger to start a new value-log file and a new memtable, with their
// blocks allocated.
const DefaultReserve = 256 << 20

// A Guard says whether the filesystem holding a directory has room for
// more writes. It holds no state but its settings, and is safe for
// concurrent use.
type Guard struct {
	dir     string
	reserve uint64
}

// NewGuard returns a Guard for the filesystem holding dir that refuses
// writes while fewer than reserve bytes are free; 0 means DefaultReserve.
func NewGuard(dir string, reserve uint64) *Guard {
	if reserve == 0 {
		reserve = DefaultReserve
	}
	return &Guard{dir: dir, reserve: reserve}
}

// Dir returns the directory whose filesystem the Guard watches.
func (g *Guard) Dir() string { return g.dir }

// LowSpaceError is the error Check returns when free space is below the
// reserve. It wraps syscall.ENOSPC.
type LowSpaceError struct {
	Dir     string
	Free    uint64 // bytes free when checked
	Reserve uint64 // bytes the Guard keeps free
}

func (e *LowSpaceError) Error() string {
	return fmt.Sprintf("diskspace: %s: %d MiB free, below the %d MiB kept in reserve: %v",
		e.Dir, e.Free>>20, e.Reserve>>20, syscall.ENOSPC)
}

// Unwrap returns syscall.ENOSPC, so that errors.Is(err, syscall.ENOSPC)
// holds for a refusal as for a failed write.
func (e *LowSpaceError) Unwrap() error { return syscall.ENOSPC }

// Check asks the kernel (one statfs(2), about a microsecond) and returns
// nil when the filesystem has at least the reserve free, a *LowSpaceError
// when it has less, and statfs's error when the kernel cannot say.
func (g *Guard) Check() error {
	free, err := Free(g.dir)
	if err != nil {
		return err
	}
	if free < g.reserve {
		return &LowSpaceError{Dir: g.dir, Free: free, Reserve: g.reserve}
	}
	return nil
}

// Free returns the bytes free to an unprivileged user on the filesystem
// holding dir.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("diskspace: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
