//go:build !unix

package queue

import "os"

// lockDir opens the lock file path. Without flock, it does not keep a
// second process from opening the queue.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
