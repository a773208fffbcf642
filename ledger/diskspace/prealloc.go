package diskspace

import (
	"path/filepath"
	"strings"
)

// isMapped reports whether a file of a badger directory is one that badger
// creates sparse and writes through a memory map: value-log files, memtable
// logs and the discard statistics. Tables (.sst) are mapped too, but are
// written whole at once, when there is nothing left to allocate ahead.
func isMapped(name string) bool {
	name = filepath.Base(name)
	return strings.HasSuffix(name, ".vlog") || strings.HasSuffix(name, ".mem") || name == "DISCARD"
}
