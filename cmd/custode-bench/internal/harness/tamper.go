package harness

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/minio/minio-go/v7"

	"github.com/custode/custode/archive/s3store"
	"github.com/custode/custode/ledger"
)

// tamperPhase flips bytes, with the gestori stopped, in a copy of A's
// ledger, in A's sealed segments (as new object versions in MinIO), and in
// evidence bundles, and counts what the verifiers catch.
func (h *harness) tamperPhase(ctx context.Context) error {
	if err := h.stopGestori(); err != nil {
		return err
	}
	var errs []string
	if r, err := h.tamperLedger(ctx); err != nil {
		errs = append(errs, err.Error())
	} else {
		h.res.Tamper = append(h.res.Tamper, r)
	}
	if r, err := h.tamperBundles(ctx); err != nil {
		errs = append(errs, err.Error())
	} else {
		h.res.Tamper = append(h.res.Tamper, r)
	}
	if h.minio != nil {
		if r, err := h.tamperSegments(ctx); err != nil {
			errs = append(errs, err.Error())
		} else {
			h.res.Tamper = append(h.res.Tamper, r)
		}
	} else {
		h.res.skip("tamper: sealed segments", "no MinIO: A seals to its local directory")
	}
	if len(errs) > 0 {
		return fmt.Errorf("tamper: %s", strings.Join(errs, "; "))
	}
	return nil
}

// flip changes one random bit of one random byte of b, in place, and
// returns the byte's offset.
func flip(b []byte) int {
	i := rand.IntN(len(b))
	b[i] ^= 1 << rand.IntN(8)
	return i
}

// copyTree copies the files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// tamperLedger copies A's ledger (with its configuration and PKI) and, in
// the copy, flips one byte of a random entry at a time, right in badger;
// custode ledger verify must fail and name the entry's sequence number.
// Each flip is undone before the next.
func (h *harness) tamperLedger(ctx context.Context) (TamperResult, error) {
	r := TamperResult{Target: "ledger entries (a copy of A's badger store)", Verifier: "custode ledger verify"}
	dir := filepath.Join(h.dir, "tamper-ledger")
	os.RemoveAll(dir)
	for _, p := range []string{"custode.json", "igpec.ldif", "pki", "ledger"} {
		src := filepath.Join(h.a.data, p)
		if err := copyTree(src, filepath.Join(dir, p)); err != nil {
			return r, fmt.Errorf("tamper ledger: copy: %w", err)
		}
	}
	defer os.RemoveAll(dir)
	if out, code, err := h.cli(ctx, "", "ledger", "verify", "-data", dir); err != nil || code != 0 {
		return r, fmt.Errorf("tamper ledger: the untouched copy does not verify: %v %s", err, tail(out, 400))
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(dir, "ledger"), ReadOnly: true})
	if err != nil {
		return r, fmt.Errorf("tamper ledger: %w", err)
	}
	size := l.Head().Size
	l.Close()
	if size == 0 {
		return r, fmt.Errorf("tamper ledger: the ledger is empty")
	}
	entries := filepath.Join(dir, "ledger", "entries")
	// rewrite sets entry seq's stored bytes to val, or with val nil flips
	// one of them and returns the original.
	rewrite := func(seq uint64, val []byte) ([]byte, error) {
		db, err := badger.Open(badger.DefaultOptions(entries).WithLogger(nil))
		if err != nil {
			return nil, err
		}
		defer db.Close()
		key := binary.BigEndian.AppendUint64([]byte{'e'}, seq)
		var orig []byte
		err = db.Update(func(txn *badger.Txn) error {
			if val == nil {
				it, err := txn.Get(key)
				if err != nil {
					return err
				}
				if orig, err = it.ValueCopy(nil); err != nil {
					return err
				}
				val = slices.Clone(orig)
				flip(val)
			}
			return txn.Set(key, val)
		})
		return orig, err
	}
	for range h.opts.Flips {
		if ctx.Err() != nil {
			break
		}
		seq := rand.Uint64N(size)
		orig, err := rewrite(seq, nil)
		if err != nil {
			return r, fmt.Errorf("tamper ledger: entry %d: %w", seq, err)
		}
		r.Flips++
		out, code, err := h.cli(ctx, "", "ledger", "verify", "-data", dir)
		if err != nil {
			return r, err
		}
		if code != 0 {
			r.Detected++
			if strings.Contains(out, fmt.Sprintf("entry %d:", seq)) {
				r.Named++
			} else {
				r.Misses = append(r.Misses, fmt.Sprintf("entry %d: detected without naming it: %s", seq, firstLine(out, "FIRST INCONSISTENCY")))
			}
		} else {
			r.Misses = append(r.Misses, fmt.Sprintf("entry %d: not detected", seq))
		}
		if _, err := rewrite(seq, orig); err != nil {
			return r, fmt.Errorf("tamper ledger: restore entry %d: %w", seq, err)
		}
	}
	if out, code, err := h.cli(ctx, "", "ledger", "verify", "-data", dir); err != nil || code != 0 {
		r.Misses = append(r.Misses, "the restored copy does not verify: "+tail(out, 300))
	}
	return r, nil
}

func firstLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return tail(strings.TrimSpace(out), 200)
}

// tamperBundles exports evidence bundles of acknowledged messages'
// ricevute di accettazione and, in copies, changes one byte of one file at a
// time (the ZIP rewritten with valid checksums, as someone editing a file
// would); custode verify must fail and name the file.
func (h *harness) tamperBundles(ctx context.Context) (TamperResult, error) {
	r := TamperResult{Target: "evidence bundles (a file inside the ZIP)", Verifier: "custode verify"}
	acked := h.track.acked("load")
	if len(acked) == 0 {
		acked = h.track.acked("")
	}
	if len(acked) == 0 {
		return r, fmt.Errorf("tamper bundles: no acknowledged message to export")
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(h.a.data, "ledger"), ReadOnly: true})
	if err != nil {
		return r, fmt.Errorf("tamper bundles: %w", err)
	}
	var ids []string
	for range 3 {
		page, err := l.Find(ctx, ledger.Query{ClientMessageID: acked[rand.IntN(len(acked))]})
		if err == nil && len(page.Entries) > 0 {
			ids = append(ids, page.Entries[0].Identificativo)
		}
	}
	l.Close()
	dir := filepath.Join(h.dir, "tamper-bundles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	var bundles []string
	for i, id := range ids {
		out := filepath.Join(dir, fmt.Sprintf("bundle-%d.zip", i))
		if _, err := h.mustCLI(ctx, "", "export", "receipt", "-data", h.a.data, "-id", id, "-kind", "accettazione", "-out", out, "-actor", "custode-bench"); err != nil {
			return r, fmt.Errorf("tamper bundles: %w", err)
		}
		if o, code, err := h.cli(ctx, "", "verify", "-anchor", h.a.ca(), out); err != nil || code != 0 {
			return r, fmt.Errorf("tamper bundles: the untouched bundle of %s does not verify: %s", id, tail(o, 400))
		}
		bundles = append(bundles, out)
	}
	if len(bundles) == 0 {
		return r, fmt.Errorf("tamper bundles: no bundle exported")
	}
	for i := range h.opts.Flips {
		if ctx.Err() != nil {
			break
		}
		src := bundles[rand.IntN(len(bundles))]
		dst := filepath.Join(dir, fmt.Sprintf("tampered-%d.zip", i))
		name, err := tamperZip(src, dst)
		if err != nil {
			return r, fmt.Errorf("tamper bundles: %w", err)
		}
		r.Flips++
		out, code, err := h.cli(ctx, "", "verify", "-anchor", h.a.ca(), dst)
		if err != nil {
			return r, err
		}
		want := name
		if strings.HasPrefix(name, "manifest.") {
			want = "manifest"
		}
		switch {
		case code == 0:
			r.Misses = append(r.Misses, fmt.Sprintf("%s: a changed byte in %s verifies", filepath.Base(src), name))
		case strings.Contains(out, want):
			r.Detected++
			r.Named++
		default:
			r.Detected++
			r.Misses = append(r.Misses, fmt.Sprintf("%s: detected without naming %s: %s", filepath.Base(src), name, firstLine(out, "FAIL")))
		}
		os.Remove(dst)
	}
	return r, nil
}

// tamperZip copies the ZIP src to dst with one byte of one random member
// changed, and returns the member's name.
func tamperZip(src, dst string) (string, error) {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return "", err
	}
	defer zr.Close()
	var candidates []int
	for i, f := range zr.File {
		if f.UncompressedSize64 > 0 {
			candidates = append(candidates, i)
		}
	}
	pick := candidates[rand.IntN(len(candidates))]
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return "", err
		}
		if i == pick {
			flip(b)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: f.Method, Modified: f.Modified})
		if err != nil {
			return "", err
		}
		if _, err := w.Write(b); err != nil {
			return "", err
		}
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return zr.File[pick].Name, os.WriteFile(dst, buf.Bytes(), 0o644)
}

// tamperSegments writes, for distinct sealed segments of A, a new object
// version in MinIO holding the segment with one byte changed (what a
// writer with the bucket's credentials can do under Object Lock: the
// original version stays); custode archive verify, with and without the
// ledger, must fail and name the segment.
func (h *harness) tamperSegments(ctx context.Context) (TamperResult, error) {
	r := TamperResult{Target: "sealed segments (a new object version in MinIO)", Verifier: "custode archive verify (with and without -no-ledger)"}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(h.a.data, "ledger"), ReadOnly: true})
	if err != nil {
		return r, fmt.Errorf("tamper segments: %w", err)
	}
	seals, err := l.Seals(ctx)
	l.Close()
	if err != nil {
		return r, fmt.Errorf("tamper segments: %w", err)
	}
	if out, code, err := h.cli(ctx, "", "archive", "verify", "-data", h.a.data); err != nil || code != 0 {
		return r, fmt.Errorf("tamper segments: the untouched archive does not verify: %v %s", err, tail(out, 600))
	}
	st, err := s3store.New(s3store.Config{Endpoint: h.minio.url, Bucket: s3Bucket, AccessKey: s3AccessKey, SecretKey: s3SecretKey})
	if err != nil {
		return r, fmt.Errorf("tamper segments: %w", err)
	}
	mc := st.Client()
	order := rand.Perm(len(seals))
	for _, i := range order[:min(len(order), h.opts.SegmentFlips)] {
		s := seals[i]
		obj, err := mc.GetObject(ctx, s3Bucket, s.Key, minio.GetObjectOptions{VersionID: s.VersionID})
		if err != nil {
			return r, fmt.Errorf("tamper segments: get %s: %w", s.Key, err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			return r, fmt.Errorf("tamper segments: get %s: %w", s.Key, err)
		}
		flip(data)
		if _, err := mc.PutObject(ctx, s3Bucket, s.Key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{SendContentMd5: true}); err != nil {
			return r, fmt.Errorf("tamper segments: put a new version of %s: %w", s.Key, err)
		}
		r.Flips++
		detected, named := 0, 0
		for _, args := range [][]string{{"archive", "verify", "-data", h.a.data}, {"archive", "verify", "-no-ledger", "-data", h.a.data}} {
			out, code, err := h.cli(ctx, "", args...)
			if err != nil {
				return r, err
			}
			if code != 0 {
				detected++
				if problemNames(out, s.Key) {
					named++
				}
			}
		}
		switch {
		case detected == 2 && named == 2:
			r.Detected++
			r.Named++
		case detected == 2:
			r.Detected++
			r.Misses = append(r.Misses, fmt.Sprintf("%s: detected without naming it", s.Key))
		default:
			r.Misses = append(r.Misses, fmt.Sprintf("%s: detected by %d of the 2 verifications", s.Key, detected))
		}
	}
	if len(seals) < h.opts.SegmentFlips {
		r.Misses = append(r.Misses, fmt.Sprintf("only %d sealed segments to tamper with, %d asked", len(seals), h.opts.SegmentFlips))
	}
	return r, nil
}

// problemNames reports whether a PROBLEM line of archive verify's output
// names key.
func problemNames(out, key string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "PROBLEM") && strings.Contains(l, key) {
			return true
		}
	}
	return false
}
