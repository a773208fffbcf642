// Package diskspace keeps the stores of a gestore answering, rather than
// crashing, when the filesystem under them fills.
//
// Badger writes its value log and its memtable log through memory maps of
// files it creates sparse. On a full filesystem a store into a page that
// has no block yet cannot fail with ENOSPC as a write(2) would: the kernel
// raises SIGBUS, and the process dies. Two things prevent that:
//
//   - A Guard refuses writes, with an error that wraps syscall.ENOSPC, while
//     the filesystem has less free space than a reserve: the caller answers
//     "try again later" (SMTP 452 4.3.1) before the disk is full.
//   - Preallocate allocates every block of the files badger maps as soon as
//     they appear, so that space another process takes later cannot fault
//     the stores already under way.
//
// What is left is a window of microseconds: a file badger creates at the
// moment the filesystem fills has no blocks yet. Creations are rare (one
// per value-log file, one per memtable), and the Guard's reserve keeps
// them from happening on a filesystem that the store itself filled.
package diskspace
