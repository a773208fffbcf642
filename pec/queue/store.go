package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// An item file is
//
//	custode-queue 1 <length of the header> <SHA-256 of the rest, hex>\n
//	<header: JSON>\n
//	<message>
//
// The checksum covers the header, its newline and the message.
const (
	magic       = "custode-queue 1"
	itemSuffix  = ".item"
	stateSuffix = ".state"
	// maxFirstLine bounds the first line of an item file.
	maxFirstLine = 128
)

// fileHeader is the JSON header of an item file.
type fileHeader struct {
	ID          string    `json:"id"`
	Destination string    `json:"destination"`
	Ref         string    `json:"ref,omitempty"`
	From        string    `json:"from"`
	To          []string  `json:"to"`
	Enqueued    time.Time `json:"enqueued"`
	NextAttempt time.Time `json:"next_attempt"`
	Size        int       `json:"size"`
}

// fileState is the content of a state file: what changes with attempts.
type fileState struct {
	ID          string    `json:"id"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
}

// fileName returns the base name of id's file with suffix. IDs hold no
// "%" (see validID), so writing "/" as "%" is reversible.
func fileName(id, suffix string) string {
	return strings.ReplaceAll(id, "/", "%") + suffix
}

// idOf returns the ID whose file name is name, and the suffix, or ok false
// for a name the queue does not write.
func idOf(name string) (id, suffix string, ok bool) {
	for _, suffix := range []string{itemSuffix, stateSuffix} {
		if base, found := strings.CutSuffix(name, suffix); found {
			id := strings.ReplaceAll(base, "%", "/")
			if validID(id) != nil {
				return "", "", false
			}
			return id, suffix, true
		}
	}
	return "", "", false
}

// encodeItem returns what precedes it.Message in its item file: the first
// line and the header.
func encodeItem(it *Item) ([]byte, error) {
	hdr, err := json.Marshal(fileHeader{
		ID:          it.ID,
		Destination: it.Destination,
		Ref:         it.Ref,
		From:        it.From,
		To:          it.To,
		Enqueued:    it.Enqueued.UTC(),
		NextAttempt: it.NextAttempt.UTC(),
		Size:        len(it.Message),
	})
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(hdr)
	h.Write([]byte{'\n'})
	h.Write(it.Message)
	b := fmt.Appendf(nil, "%s %d %x\n", magic, len(hdr), h.Sum(nil))
	b = append(b, hdr...)
	return append(b, '\n'), nil
}

// decodeItem parses and verifies the content of an item file.
func decodeItem(b []byte) (Item, error) {
	nl := bytes.IndexByte(b[:min(len(b), maxFirstLine)], '\n')
	if nl < 0 {
		return Item{}, errors.New("no header line")
	}
	fields := strings.Fields(string(b[:nl]))
	if len(fields) != 4 || fields[0]+" "+fields[1] != magic {
		return Item{}, fmt.Errorf("not a queue file (header line %q)", b[:nl])
	}
	hlen, err := strconv.Atoi(fields[2])
	rest := b[nl+1:]
	if err != nil || hlen <= 0 || hlen >= len(rest) {
		return Item{}, fmt.Errorf("bad header length %q", fields[2])
	}
	want, err := hex.DecodeString(fields[3])
	if err != nil || len(want) != sha256.Size {
		return Item{}, fmt.Errorf("bad checksum %q", fields[3])
	}
	if got := sha256.Sum256(rest); !bytes.Equal(got[:], want) {
		return Item{}, errors.New("checksum mismatch: the file is damaged")
	}
	if rest[hlen] != '\n' {
		return Item{}, errors.New("header not followed by a newline")
	}
	var h fileHeader
	if err := json.Unmarshal(rest[:hlen], &h); err != nil {
		return Item{}, fmt.Errorf("header: %w", err)
	}
	msg := rest[hlen+1:]
	if len(msg) != h.Size {
		return Item{}, fmt.Errorf("message of %d bytes, header says %d", len(msg), h.Size)
	}
	it := Item{
		ID:          h.ID,
		Destination: h.Destination,
		Ref:         h.Ref,
		From:        h.From,
		To:          h.To,
		Message:     msg,
		Enqueued:    h.Enqueued,
		NextAttempt: h.NextAttempt,
	}
	if err := it.validate(); err != nil {
		return Item{}, err
	}
	return it, nil
}

// decodeState parses the content of a state file.
func decodeState(b []byte) (fileState, error) {
	var s fileState
	if err := json.Unmarshal(b, &s); err != nil {
		return fileState{}, err
	}
	if s.Attempts < 0 {
		return fileState{}, fmt.Errorf("negative attempts %d", s.Attempts)
	}
	return s, nil
}

// createTemp creates a file in dir holding the concatenation of parts,
// not yet synced. On error nothing is left behind.
func createTemp(dir string, parts ...[]byte) (*os.File, error) {
	f, err := os.CreateTemp(dir, "*.tmp")
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return f, nil
}

// writeTemp writes the concatenation of parts to a new file in dir and
// fsyncs it, returning its path. On error nothing is left behind.
func writeTemp(dir string, parts ...[]byte) (string, error) {
	f, err := createTemp(dir, parts...)
	if err != nil {
		return "", err
	}
	if err := syncClose([]*os.File{f}); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// maxParallelSyncs bounds the fsyncs that syncClose runs at once.
const maxParallelSyncs = 16

// syncClose fsyncs and closes files, several at once: the file system
// can then commit them together.
func syncClose(files []*os.File) error {
	errs := make([]error, len(files))
	if len(files) == 1 {
		errs[0] = files[0].Sync()
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxParallelSyncs)
		for i, f := range files {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				errs[i] = f.Sync()
			})
		}
		wg.Wait()
	}
	for i, f := range files {
		if err := f.Close(); errs[i] == nil {
			errs[i] = err
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("%s: %w", f.Name(), errs[i])
		}
	}
	return errors.Join(errs...)
}

// syncDir fsyncs directory dir, making the creation, renaming and removal
// of its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeIfExists removes path; a path already gone is not an error.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// freeName returns a path in dir for name that no file has, adding a
// numeric suffix if needed.
func freeName(dir, name string) string {
	p := filepath.Join(dir, name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(p); err != nil {
			return p // absent, or an error that the rename will report
		}
		p = filepath.Join(dir, fmt.Sprintf("%s.%d", name, i))
	}
}
