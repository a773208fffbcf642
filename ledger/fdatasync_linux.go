package ledger

import (
	"os"
	"syscall"
)

// fdatasync makes the data written to f durable, and the metadata needed
// to read it back; on a segment whose blocks are already written, that is
// the data alone.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
