package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The indexes are derived data: the indexer writes them after the entries
// they point to are durable, off the path of Append, and Open rebuilds from
// the entries whatever a crash lost.
//
// They are sorted runs of postings (see posting), in the manner of a
// log-structured merge tree. The indexer sorts the postings of each batch of
// group commits into a run in memory; runs in memory are merged two by two
// as they grow, and once they hold memRunPostings postings they are merged
// into one run file. Run files are merged mergeFactor at a time in the
// background. A run file holds the postings of the entries [from, to), and
// is named after them (%020d-%020d.run):
//
//	magic     16 bytes  "custode-index/1\n"
//	postings  count × 24 bytes, ascending
//	count     uint64
//	crc       uint32    CRC-32C of the postings
//	magic     4 bytes   "cidx"
//
// all integers big-endian. A run file is written under a temporary name,
// fsynced and only then renamed, so a run file with its final name is
// complete. At Open the runs that cover [0, n) without a gap are kept and
// the others removed; entries from n on are indexed again from the store.

const (
	indexDirName  = "postings"
	runSuffix     = ".run"
	runMagic      = "custode-index/1\n"
	runTrailer    = "cidx"
	runHeaderSize = len(runMagic)
	runFooterSize = 16
	// memRunPostings is how many postings are kept in memory before they
	// are written to a run file.
	memRunPostings = 1 << 19
	// mergeFactor is how many run files of similar size are merged into one.
	mergeFactor = 4
)

// maxIndexBacklog bounds the postings waiting for the indexer; beyond it the
// sequencer waits, so that a slow indexer slows appends rather than growing
// memory without bound.
const maxIndexBacklog = 1 << 20

// indexWork is the postings of one group commit, sequence numbers
// included, and the ledger size after it.
type indexWork struct {
	postings []posting
	upTo     uint64
}

// indexStore is the set of runs of a ledger's index.
type indexStore struct {
	dir      string
	log      *slog.Logger
	readOnly bool
	memMax   int // memRunPostings, but for tests

	mu      sync.Mutex
	files   []*runFile  // on disk, in order of their entries, covering [0, memFrom)
	mem     [][]posting // in memory, newest last, covering [memFrom, upTo)
	memFrom uint64
	upTo    uint64
	merging bool
	mergeWG sync.WaitGroup
	closed  bool
}

// runFile is one run file, shared by the queries reading it.
type runFile struct {
	f        *os.File
	from, to uint64
	count    int64
	refs     int // the store's reference, and one per query reading it
}

func runPath(dir string, from, to uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d-%020d%s", from, to, runSuffix))
}

// openIndexStore opens the runs in dir: it keeps those that cover the
// entries from 0 without a gap (preferring the longest), removes the others
// unless readOnly, and returns the store with upTo set to the first entry
// they do not cover.
func openIndexStore(dir string, readOnly bool, log *slog.Logger) (*indexStore, error) {
	s := &indexStore{dir: dir, log: log, readOnly: readOnly, memMax: memRunPostings}
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) && readOnly {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	type cand struct {
		name     string
		from, to uint64
	}
	var cands []cand
	var drop []string
	for _, de := range des {
		name := de.Name()
		base, ok := strings.CutSuffix(name, runSuffix)
		a, b, ok2 := strings.Cut(base, "-")
		from, err1 := strconv.ParseUint(a, 10, 64)
		to, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil || len(a) != 20 || len(b) != 20 || to < from {
			drop = append(drop, name) // a temporary file, or not ours
			continue
		}
		cands = append(cands, cand{name, from, to})
	}
	slices.SortFunc(cands, func(x, y cand) int {
		if x.from != y.from {
			return compareUint(x.from, y.from)
		}
		return compareUint(y.to, x.to)
	})
	for _, c := range cands {
		if c.from != s.upTo || c.to == c.from {
			drop = append(drop, c.name)
			continue
		}
		rf, err := openRunFile(filepath.Join(dir, c.name), c.from, c.to)
		if err != nil {
			log.Warn("ledger: index run unreadable, indexing its entries again", "run", c.name, "err", err)
			drop = append(drop, c.name)
			continue
		}
		s.files = append(s.files, rf)
		s.upTo = c.to
	}
	s.memFrom = s.upTo
	if !readOnly {
		for _, name := range drop {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				s.close()
				return nil, err
			}
		}
	}
	return s, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func openRunFile(path string, from, to uint64) (*runFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	rf, err := checkRunFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	rf.from, rf.to = from, to
	return rf, nil
}

// checkRunFile checks the framing of a run file (not its checksum: a run
// file is complete before it is given its name).
func checkRunFile(f *os.File) (*runFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(runHeaderSize+runFooterSize) || (size-int64(runHeaderSize+runFooterSize))%postingSize != 0 {
		return nil, fmt.Errorf("run file of %d bytes", size)
	}
	head := make([]byte, runHeaderSize)
	foot := make([]byte, runFooterSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(foot, size-runFooterSize); err != nil {
		return nil, err
	}
	count := (size - int64(runHeaderSize+runFooterSize)) / postingSize
	if string(head) != runMagic || string(foot[12:]) != runTrailer || binary.BigEndian.Uint64(foot) != uint64(count) {
		return nil, errors.New("not a run file, or cut short")
	}
	return &runFile{f: f, count: count, refs: 1}, nil
}

// writeRunFile writes the sorted postings ps of entries [from, to) to a run
// file in dir and makes it durable: temporary file, fdatasync, rename, fsync
// of dir. It does not use durable.WriteFile because it streams the postings
// through a buffer instead of holding the whole run file in memory.
func writeRunFile(dir string, from, to uint64, ps postingSource) (err error) {
	path := runPath(dir, from, to)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	crc := crc32.New(castagnoli)
	if _, err := w.WriteString(runMagic); err != nil {
		return err
	}
	var count uint64
	buf := make([]byte, 0, postingSize)
	for {
		p, ok, err := ps.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		buf = p.append(buf[:0])
		crc.Write(buf)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		count++
	}
	foot := binary.BigEndian.AppendUint64(nil, count)
	foot = binary.BigEndian.AppendUint32(foot, crc.Sum32())
	foot = append(foot, runTrailer...)
	if _, err := w.Write(foot); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// add puts the postings of entries [s.upTo, upTo) into the memory runs,
// and writes the memory runs to a run file once they are large enough; if
// that fails, the postings stay in memory. add and flush are called by one
// goroutine at a time.
func (s *indexStore) add(ps []posting, upTo uint64) error {
	slices.SortFunc(ps, comparePostings)
	s.mu.Lock()
	mem := append(s.mem, ps)
	// Merge two by two, so that each run is at least twice the size of the
	// next: a posting is copied O(log n) times, and there are O(log n) runs.
	for len(mem) >= 2 && len(mem[len(mem)-2]) < 2*len(mem[len(mem)-1]) {
		a, b := mem[len(mem)-2], mem[len(mem)-1]
		mem = append(mem[:len(mem)-2], mergePostings(a, b))
	}
	s.mem, s.upTo = mem, upTo
	n := 0
	for _, r := range mem {
		n += len(r)
	}
	s.mu.Unlock()
	if n >= s.memMax {
		return s.flush()
	}
	return nil
}

func mergePostings(a, b []posting) []posting {
	out := make([]posting, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if comparePostings(a[0], b[0]) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// flush writes the memory runs to a run file, and starts merging run files
// if there are enough of them.
func (s *indexStore) flush() error {
	s.mu.Lock()
	mem, from, to := s.mem, s.memFrom, s.upTo
	s.mu.Unlock()
	if from == to {
		return nil
	}
	srcs := make([]postingSource, len(mem))
	for i, r := range mem {
		srcs[i] = &sliceSource{ps: r}
	}
	if err := writeRunFile(s.dir, from, to, newMergeSource(srcs)); err != nil {
		return fmt.Errorf("write index run %d-%d: %w", from, to, err)
	}
	rf, err := openRunFile(runPath(s.dir, from, to), from, to)
	if err != nil {
		return fmt.Errorf("open index run %d-%d: %w", from, to, err)
	}
	s.mu.Lock()
	s.files = append(s.files, rf)
	s.mem = s.mem[len(mem):]
	s.memFrom = to
	s.maybeMerge()
	s.mu.Unlock()
	return nil
}

// maybeMerge starts merging the last mergeFactor run files if they are of
// similar size. Called with s.mu held.
func (s *indexStore) maybeMerge() {
	if s.merging || s.closed || len(s.files) < mergeFactor {
		return
	}
	tail := s.files[len(s.files)-mergeFactor:]
	if tail[0].count >= 2*tail[len(tail)-1].count+int64(s.memMax) {
		return
	}
	runs := slices.Clone(tail)
	for _, r := range runs {
		r.refs++
	}
	s.merging = true
	s.mergeWG.Add(1)
	go func() {
		defer s.mergeWG.Done()
		err := s.merge(runs)
		s.mu.Lock()
		s.merging = false
		if err != nil {
			s.log.Error("ledger: merge index runs", "from", runs[0].from, "to", runs[len(runs)-1].to, "err", err)
		} else {
			s.maybeMerge()
		}
		s.mu.Unlock()
		s.releaseRuns(runs)
	}()
}

// merge writes runs, which are adjacent, into one run file and replaces
// them with it.
func (s *indexStore) merge(runs []*runFile) error {
	from, to := runs[0].from, runs[len(runs)-1].to
	srcs := make([]postingSource, len(runs))
	for i, r := range runs {
		srcs[i] = newFileSource(r, 0)
	}
	if err := writeRunFile(s.dir, from, to, newMergeSource(srcs)); err != nil {
		return err
	}
	rf, err := openRunFile(runPath(s.dir, from, to), from, to)
	if err != nil {
		return err
	}
	s.mu.Lock()
	i := slices.Index(s.files, runs[0])
	if i < 0 || len(s.files) < i+len(runs) || !slices.Equal(s.files[i:i+len(runs)], runs) {
		s.mu.Unlock()
		rf.f.Close()
		return errors.New("the runs changed while they were merged")
	}
	s.files = slices.Replace(s.files, i, i+len(runs), rf)
	s.mu.Unlock()
	// The merged run is durable: the runs it replaces can go.
	for _, r := range runs {
		if err := os.Remove(r.f.Name()); err != nil {
			s.log.Warn("ledger: remove merged index run", "run", r.f.Name(), "err", err)
		}
		s.releaseRuns([]*runFile{r})
	}
	return nil
}

func (s *indexStore) releaseRuns(runs []*runFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range runs {
		r.refs--
		if r.refs == 0 {
			r.f.Close()
		}
	}
}

// close waits for a merge to end and closes the run files; it writes the
// memory runs out first unless the store is read-only.
func (s *indexStore) close() error {
	var err error
	if !s.readOnly {
		err = s.flush()
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.mergeWG.Wait()
	s.mu.Lock()
	files := s.files
	s.files = nil
	s.mu.Unlock()
	s.releaseRuns(files)
	return err
}

// indexSnapshot is what one query reads: the runs as they were when it
// started.
type indexSnapshot struct {
	files []*runFile
	mem   [][]posting
}

// acquire returns the current runs, which stay open until release.
func (s *indexStore) acquire() *indexSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &indexSnapshot{files: slices.Clone(s.files), mem: slices.Clone(s.mem)}
	for _, r := range snap.files {
		r.refs++
	}
	return snap
}

func (s *indexStore) release(snap *indexSnapshot) {
	s.releaseRuns(snap.files)
}

// seek returns the postings of the snapshot from start on, in order.
func (snap *indexSnapshot) seek(start posting) (postingSource, error) {
	var srcs []postingSource
	for _, r := range snap.files {
		i, err := r.search(start)
		if err != nil {
			return nil, fmt.Errorf("index run %d-%d: %w", r.from, r.to, err)
		}
		if i < r.count {
			srcs = append(srcs, newFileSource(r, i))
		}
	}
	for _, m := range snap.mem {
		i, _ := slices.BinarySearchFunc(m, start, comparePostings)
		if i < len(m) {
			srcs = append(srcs, &sliceSource{ps: m[i:]})
		}
	}
	return newMergeSource(srcs), nil
}

// search returns the index of the first posting in r not before p.
func (r *runFile) search(p posting) (int64, error) {
	var b [postingSize]byte
	lo, hi := int64(0), r.count
	for lo < hi {
		mid := int64(uint64(lo+hi) >> 1)
		if _, err := r.f.ReadAt(b[:], int64(runHeaderSize)+mid*postingSize); err != nil {
			return 0, err
		}
		if comparePostings(decodePosting(b[:]), p) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// postingSource yields postings in order.
type postingSource interface {
	// next returns the next posting, or ok false at the end.
	next() (p posting, ok bool, err error)
}

type sliceSource struct{ ps []posting }

func (s *sliceSource) next() (posting, bool, error) {
	if len(s.ps) == 0 {
		return posting{}, false, nil
	}
	p := s.ps[0]
	s.ps = s.ps[1:]
	return p, true, nil
}

// fileSource reads a run file from a position on, in blocks that grow as
// it reads, so that a short query reads little.
type fileSource struct {
	r     *runFile
	i     int64 // next posting to read from the file
	buf   []byte
	block int
}

func newFileSource(r *runFile, from int64) *fileSource {
	return &fileSource{r: r, i: from, block: 64}
}

func (s *fileSource) next() (posting, bool, error) {
	if len(s.buf) == 0 {
		if s.i >= s.r.count {
			return posting{}, false, nil
		}
		n := min(int64(s.block), s.r.count-s.i)
		s.buf = slices.Grow(s.buf[:0], int(n)*postingSize)[:n*postingSize]
		if _, err := s.r.f.ReadAt(s.buf, int64(runHeaderSize)+s.i*postingSize); err != nil && !errors.Is(err, io.EOF) {
			return posting{}, false, err
		}
		s.i += n
		s.block = min(s.block*4, 16384)
	}
	p := decodePosting(s.buf)
	s.buf = s.buf[postingSize:]
	return p, true, nil
}

// mergeSource merges sources in order.
type mergeSource struct {
	srcs  []postingSource
	heads []posting
}

func newMergeSource(srcs []postingSource) *mergeSource {
	return &mergeSource{srcs: srcs}
}

func (m *mergeSource) next() (posting, bool, error) {
	if m.heads == nil {
		m.heads = make([]posting, 0, len(m.srcs))
		live := m.srcs[:0]
		for _, s := range m.srcs {
			p, ok, err := s.next()
			if err != nil {
				return posting{}, false, err
			}
			if ok {
				live = append(live, s)
				m.heads = append(m.heads, p)
			}
		}
		m.srcs = live
	}
	if len(m.heads) == 0 {
		return posting{}, false, nil
	}
	best := 0
	for i := 1; i < len(m.heads); i++ {
		if comparePostings(m.heads[i], m.heads[best]) < 0 {
			best = i
		}
	}
	out := m.heads[best]
	p, ok, err := m.srcs[best].next()
	if err != nil {
		return posting{}, false, err
	}
	if ok {
		m.heads[best] = p
	} else {
		m.srcs = slices.Delete(m.srcs, best, best+1)
		m.heads = slices.Delete(m.heads, best, best+1)
	}
	return out, true, nil
}

// catchUpIndex indexes the entries that a crash left unindexed.
func (l *Ledger) catchUpIndex(ctx context.Context) error {
	from := l.index.upTo
	if from > l.size {
		return fmt.Errorf("ledger: open: %d entries indexed but only %d stored", from, l.size)
	}
	var ps []posting
	err := l.scanEntries(ctx, from, l.size, func(seq uint64, raw []byte) error {
		if _, _, ok := parsePurged(raw); ok {
			return nil // purged: not to be found again
		}
		e, err := DecodeEntry(raw)
		if err != nil {
			return err
		}
		for _, p := range indexTerms(&e.Event) {
			p.seq = seq
			ps = append(ps, p)
		}
		if len(ps) >= l.index.memMax/4 {
			err := l.index.add(ps, seq+1)
			ps = nil
			return err
		}
		return nil
	})
	if err == nil && from < l.size {
		err = l.index.add(ps, l.size)
	}
	if err != nil {
		return fmt.Errorf("ledger: open: index entries %d-%d: %w", from, l.size, err)
	}
	if from < l.size {
		l.log.Info("ledger: indexed entries left by a crash", "from", from, "to", l.size)
	}
	l.setIndexed(l.size)
	return nil
}

// removeOldIndex removes the index of the previous layout, a badger store
// in dir/index, which the postings replace; they are rebuilt from the
// entries.
func removeOldIndex(dir string, log *slog.Logger) error {
	old := filepath.Join(dir, "index")
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	log.Info("ledger: removing the index of an older layout; it is rebuilt from the entries", "dir", old)
	return os.RemoveAll(old)
}

// queueIndex hands the postings of a durable group to the indexer. It
// never waits for an index write, only for room when the backlog is full.
func (l *Ledger) queueIndex(w indexWork) {
	for {
		l.idxMu.Lock()
		if l.idxPostings < maxIndexBacklog || len(l.idxQueue) == 0 {
			l.idxQueue = append(l.idxQueue, w)
			l.idxPostings += len(w.postings)
			l.idxMu.Unlock()
			signal(l.idxSignal)
			return
		}
		l.idxMu.Unlock()
		<-l.idxRoom
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// runIndexer indexes the postings of durable groups: everything queued
// since it last looked becomes one sorted run.
func (l *Ledger) runIndexer() {
	defer close(l.indexerDone)
	for {
		<-l.idxSignal
		l.idxMu.Lock()
		queue, closed := l.idxQueue, l.idxClosed
		l.idxQueue, l.idxPostings = nil, 0
		l.idxMu.Unlock()
		signal(l.idxRoom)
		if len(queue) > 0 {
			n := 0
			for _, w := range queue {
				n += len(w.postings)
			}
			ps := make([]posting, 0, n)
			for _, w := range queue {
				ps = append(ps, w.postings...)
			}
			upTo := queue[len(queue)-1].upTo
			err := l.index.add(ps, upTo)
			l.setIndexed(upTo)
			// The postings are in memory: only writing them to a run file
			// failed, which queries do not notice. The next Open rebuilds
			// what a crash loses meanwhile.
			for err != nil && !closed {
				l.log.Error("ledger: write index", "up_to", upTo, "err", err)
				<-afterRetry()
				err = l.index.flush()
			}
		}
		if closed {
			return
		}
	}
}

func (l *Ledger) setIndexed(n uint64) {
	l.mu.Lock()
	if n > l.indexed {
		l.indexed = n
		close(l.indexedCh)
		l.indexedCh = make(chan struct{})
	}
	l.mu.Unlock()
}

// waitIndexed waits until the first n entries are indexed.
func (l *Ledger) waitIndexed(ctx context.Context, n uint64) error {
	if l.readOnly {
		return nil
	}
	for {
		l.mu.Lock()
		done, ch := l.indexed >= n, l.indexedCh
		l.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// afterRetry is how long the indexer waits before writing again after a
// failure.
func afterRetry() <-chan time.Time { return time.After(time.Second) }
