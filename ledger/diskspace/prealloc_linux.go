package diskspace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A Preallocator keeps the blocks of badger's memory-mapped files in one
// directory allocated: the value-log files, the memtable logs and the
// discard statistics. It allocates those present when it starts and each
// one created or resized afterwards, as inotify(7) reports them.
type Preallocator struct {
	dir  string
	log  *slog.Logger
	f    *os.File // the inotify descriptor, in the runtime's poller
	done chan struct{}

	closeOnce sync.Once
	mu        sync.Mutex
	failed    map[string]error // files left sparse, and why
}

// Preallocate starts a Preallocator on dir. Files it cannot allocate (the
// filesystem is already full, say) are logged and listed by Sparse; it
// tries them again whenever they change. Close stops it.
func Preallocate(dir string, log *slog.Logger) (*Preallocator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("diskspace: preallocate %s: inotify: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MODIFY|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("diskspace: preallocate %s: watch: %w", dir, err)
	}
	p := &Preallocator{
		dir:    dir,
		log:    log,
		f:      os.NewFile(uintptr(fd), "inotify "+dir),
		done:   make(chan struct{}),
		failed: map[string]error{},
	}
	// Files created before the watch are allocated now; one created in
	// between is both listed here and reported, and allocating twice is
	// harmless.
	if err := p.scan(); err != nil {
		p.f.Close()
		return nil, err
	}
	go p.watch()
	return p, nil
}

// Close stops the Preallocator and waits for it. Later calls do nothing.
func (p *Preallocator) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.f.Close()
		<-p.done
	})
	if err != nil {
		return fmt.Errorf("diskspace: preallocate %s: close: %w", p.dir, err)
	}
	return nil
}

// Sparse returns the files the Preallocator could not allocate, each with
// the reason.
func (p *Preallocator) Sparse() map[string]error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.failed)
}

func (p *Preallocator) scan() error {
	names, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("diskspace: preallocate %s: %w", p.dir, err)
	}
	for _, e := range names {
		if isMapped(e.Name()) {
			p.allocate(e.Name())
		}
	}
	return nil
}

func (p *Preallocator) watch() {
	defer close(p.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			if !errors.Is(err, fs.ErrClosed) {
				p.log.Error("diskspace: preallocate: reading inotify events stopped", "dir", p.dir, "err", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then len bytes
			// of name padded with NULs.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := buf[off+unix.SizeofInotifyEvent : min(n, off+unix.SizeofInotifyEvent+size)]
			off += unix.SizeofInotifyEvent + size
			if mask&unix.IN_Q_OVERFLOW != 0 {
				if err := p.scan(); err != nil {
					p.log.Error("diskspace: preallocate: rescan after lost events", "err", err)
				}
				continue
			}
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if isMapped(string(name)) {
				p.allocate(string(name))
			}
		}
	}
}

// allocate gives every byte of the file, up to its size, a block.
func (p *Preallocator) allocate(name string) {
	path := filepath.Join(p.dir, name)
	err := allocateFile(path)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		delete(p.failed, name)
		return
	}
	if _, seen := p.failed[name]; !seen {
		p.log.Warn("diskspace: a memory-mapped store file stays sparse: a full disk now would stop the process", "file", path, "err", err)
	}
	p.failed[name] = err
}

func allocateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Size == 0 || st.Blocks*512 >= st.Size {
		return nil
	}
	// Mode 0 over [0, size) allocates the holes and leaves the size and the
	// written bytes as they are.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, st.Size); err != nil {
		return fmt.Errorf("fallocate %d bytes: %w", st.Size, err)
	}
	return nil
}
