// Package s3store is the S3 Object Lock driver of archive.Store, through
// minio-go. It works with MinIO, versitygw, AWS S3 and any S3 server that
// implements Object Lock.
//
// The server enforces the lock. Every PUT carries an explicit retention mode,
// a retain-until date and the SHA-256 of the bytes (x-amz-checksum-sha256,
// which the server checks, plus x-amz-meta-custode-sha256, which Get checks
// on the way back). A PUT never carries a legal hold without a mode and a
// date: on MinIO such a PUT skips the bucket's default retention. Puts are
// conditional (If-None-Match: *), so a key is never overwritten by this
// package; a foreign client can still add a version to a locked key, so
// reads address versions (see package archive).
//
// Retention and legal hold are read back from the object's HEAD/GET headers
// (x-amz-object-lock-mode, x-amz-object-lock-retain-until-date and
// x-amz-object-lock-legal-hold). Only when a server leaves them out (AWS does
// without the s3:GetObjectRetention permission) does Stat ask
// GetObjectRetention and GetObjectLegalHold. The headers come first because
// versitygw answers GetObjectRetention with an <ObjectLockRetention> element
// that minio-go cannot parse.
//
// S3 keeps retain-until dates to the second: the driver rounds every date up
// to the next whole second, so a retention is never shorter than asked.
//
// Root on the storage hosts can still destroy the data directories; real
// deployments put the bucket on machines of its own.
package s3store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custode/custode/archive"
)

// DefaultRetentionDays is the bucket's default COMPLIANCE retention set by
// EnsureBucket when Config.DefaultRetentionDays is zero: one day, a safety
// net only, since every PUT of this package carries its own retention.
const DefaultRetentionDays = 1

// Header and metadata names.
const (
	metaSHA256        = "Custode-Sha256" // x-amz-meta-custode-sha256, lowercase hex
	hdrChecksumSHA256 = "X-Amz-Checksum-Sha256"
	hdrLockMode       = "X-Amz-Object-Lock-Mode"
	hdrLockUntil      = "X-Amz-Object-Lock-Retain-Until-Date"
	hdrLegalHold      = "X-Amz-Object-Lock-Legal-Hold"
)

// Config says where the bucket is.
type Config struct {
	// Endpoint is the server's URL, "http://host:port" or "https://host".
	Endpoint  string
	AccessKey string
	SecretKey string
	// Region is the bucket's region; empty lets minio-go find it.
	Region string
	Bucket string
	// DefaultRetentionDays is the bucket default EnsureBucket sets; zero
	// means DefaultRetentionDays.
	DefaultRetentionDays uint
	// Transport, if set, carries the HTTP requests (tests, custom TLS).
	Transport http.RoundTripper
	// Now is the clock Put checks retain-until dates against. Nil means
	// time.Now. The server's own clock decides when a lock expires.
	Now func() time.Time
}

// Store is an archive.Store in one S3 bucket with Object Lock. It is safe
// for concurrent use.
type Store struct {
	client *minio.Client
	bucket string
	days   uint
	now    func() time.Time
}

var _ archive.Store = (*Store)(nil)

// New returns a Store for cfg. It does not contact the server; call
// EnsureBucket before the first Put.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("archive: s3 endpoint %q: want http://host:port or https://host: %w", cfg.Endpoint, archive.ErrInvalid)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("archive: s3: no bucket: %w", archive.ErrInvalid)
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    u.Scheme == "https",
		Region:    cfg.Region,
		Transport: cfg.Transport,
		// Needed by minio-go to send our own x-amz-checksum-sha256.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("archive: s3 client %s: %w", cfg.Endpoint, err)
	}
	days := cfg.DefaultRetentionDays
	if days == 0 {
		days = DefaultRetentionDays
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{client: client, bucket: cfg.Bucket, days: days, now: now}, nil
}

// Client returns the underlying minio-go client, for administration and
// tests. Writes through it bypass this package's rules (not the server's).
func (s *Store) Client() *minio.Client { return s.client }

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket with Object Lock enabled (which also
// enables versioning) and a default COMPLIANCE retention, or checks that an
// existing bucket has Object Lock enabled. A bucket without Object Lock is
// an error: it cannot be turned on later on every server.
func (s *Store) EnsureBucket(ctx context.Context) error {
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("archive: bucket %s: %w", s.bucket, err)
	}
	if !exists {
		if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
			return fmt.Errorf("archive: create bucket %s: %w", s.bucket, err)
		}
		mode, unit := minio.Compliance, minio.Days
		if err := s.client.SetObjectLockConfig(ctx, s.bucket, &mode, &s.days, &unit); err != nil {
			return fmt.Errorf("archive: bucket %s: default retention: %w", s.bucket, err)
		}
	}
	enabled, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("archive: bucket %s: object lock: %w", s.bucket, err)
	}
	if enabled != "Enabled" {
		return fmt.Errorf("archive: bucket %s: object lock is %q, not Enabled", s.bucket, enabled)
	}
	return nil
}

// ceilSecond rounds t up to a whole second, the precision S3 keeps.
func ceilSecond(t time.Time) time.Time {
	c := t.Truncate(time.Second)
	if c.Before(t) {
		c = c.Add(time.Second)
	}
	return c.UTC()
}

// mapErr turns a server error into the archive's typed errors. worm says
// whether the operation is one the lock can refuse.
func mapErr(op, key, versionID string, worm bool, err error) error {
	where := key
	if versionID != "" {
		where += " version " + versionID
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchVersion" || resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket":
		return fmt.Errorf("archive: %s %s: %w: %w", op, where, archive.ErrNotFound, err)
	case op == "put" && (resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed):
		return fmt.Errorf("archive: %s %s: %w: %w", op, where, archive.ErrExists, err)
	case worm && (resp.StatusCode == http.StatusForbidden && resp.Code == "AccessDenied" ||
		resp.StatusCode == http.StatusBadRequest && resp.Code == "InvalidRequest"):
		// MinIO says InvalidRequest (400); AWS and versitygw AccessDenied (403).
		return &archive.RefusedError{Op: op, Key: key, VersionID: versionID, Err: err}
	}
	return fmt.Errorf("archive: %s %s: %w", op, where, err)
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, data []byte, opts archive.PutOptions) (archive.ObjectInfo, error) {
	if err := archive.ValidatePut(key, data, opts, s.now()); err != nil {
		return archive.ObjectInfo{}, err
	}
	sum := archive.Sum(data)
	until := ceilSecond(opts.Retention.RetainUntil)
	po := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		Mode:             minio.RetentionMode(opts.Retention.Mode),
		RetainUntilDate:  until,
		DisableMultipart: true,
		UserMetadata: map[string]string{
			"x-amz-checksum-sha256": base64.StdEncoding.EncodeToString(sum[:]),
			metaSHA256:              hex.EncodeToString(sum[:]),
		},
	}
	if opts.LegalHold {
		// Always together with Mode and RetainUntilDate, never alone.
		po.LegalHold = minio.LegalHoldEnabled
	}
	po.SetMatchETagExcept("*")
	up, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), po)
	if err != nil {
		return archive.ObjectInfo{}, mapErr("put", key, "", true, err)
	}
	if up.VersionID == "" {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: server returned no version id (bucket %s not versioned?)", key, s.bucket)
	}
	return archive.ObjectInfo{
		Key:          key,
		VersionID:    up.VersionID,
		Size:         int64(len(data)),
		SHA256:       sum,
		Retention:    archive.Retention{Mode: opts.Retention.Mode, RetainUntil: until},
		LegalHold:    opts.LegalHold,
		LastModified: up.LastModified,
	}, nil
}

// firstVersion returns the oldest live version id of key.
func (s *Store) firstVersion(ctx context.Context, op, key string) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := ""
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true}) {
		if o.Err != nil {
			return "", mapErr(op, key, "", false, o.Err)
		}
		if o.Key != key {
			if o.Key > key {
				break
			}
			continue
		}
		if !o.IsDeleteMarker {
			first = o.VersionID // versions come newest first: keep the last
		}
	}
	if first == "" {
		return "", fmt.Errorf("archive: %s %s: %w", op, key, archive.ErrNotFound)
	}
	return first, nil
}

func (s *Store) resolve(ctx context.Context, op, key, versionID string) (string, error) {
	if err := archive.ValidateKey(key); err != nil {
		return "", err
	}
	if versionID != "" {
		return versionID, nil
	}
	return s.firstVersion(ctx, op, key)
}

// infoFrom builds an ObjectInfo from a HEAD or GET answer, asking the
// retention APIs only when the lock headers are missing.
func (s *Store) infoFrom(ctx context.Context, op, key string, oi minio.ObjectInfo) (archive.ObjectInfo, error) {
	info := archive.ObjectInfo{Key: key, VersionID: oi.VersionID, Size: oi.Size, LastModified: oi.LastModified}
	h := oi.Headers
	if h == nil {
		h = oi.Metadata
	}
	var haveHex, haveB64 bool
	var fromHex, fromB64 [32]byte
	if v := oi.UserMetadata[metaSHA256]; v != "" {
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != 32 {
			return info, fmt.Errorf("archive: %s %s version %s: bad %s %q", op, key, oi.VersionID, metaSHA256, v)
		}
		copy(fromHex[:], b)
		haveHex = true
	}
	if v := h.Get(hdrChecksumSHA256); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != 32 {
			return info, fmt.Errorf("archive: %s %s version %s: bad %s %q", op, key, oi.VersionID, hdrChecksumSHA256, v)
		}
		copy(fromB64[:], b)
		haveB64 = true
	}
	switch {
	case haveHex && haveB64 && fromHex != fromB64:
		return info, fmt.Errorf("archive: %s %s version %s: recorded SHA-256 %x and server checksum %x differ: %w",
			op, key, oi.VersionID, fromHex, fromB64, archive.ErrChecksum)
	case haveHex:
		info.SHA256 = fromHex
	case haveB64:
		info.SHA256 = fromB64
	default:
		return info, fmt.Errorf("archive: %s %s version %s: no SHA-256 recorded (not written by archive?): %w",
			op, key, oi.VersionID, archive.ErrChecksum)
	}

	mode, until := h.Get(hdrLockMode), h.Get(hdrLockUntil)
	if mode != "" && until != "" {
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return info, fmt.Errorf("archive: %s %s version %s: %s %q: %w", op, key, oi.VersionID, hdrLockUntil, until, err)
		}
		info.Retention = archive.Retention{Mode: archive.Mode(mode), RetainUntil: t.UTC()}
		info.LegalHold = strings.EqualFold(h.Get(hdrLegalHold), "ON")
		return info, nil
	}
	// The server kept the lock out of the headers: ask for it.
	m, t, err := s.client.GetObjectRetention(ctx, s.bucket, key, oi.VersionID)
	if err != nil {
		return info, mapErr(op, key, oi.VersionID, false, fmt.Errorf("retention: %w", err))
	}
	if m != nil && t != nil {
		info.Retention = archive.Retention{Mode: archive.Mode(*m), RetainUntil: t.UTC()}
	}
	lh, err := s.client.GetObjectLegalHold(ctx, s.bucket, key, minio.GetObjectLegalHoldOptions{VersionID: oi.VersionID})
	if err != nil {
		if minio.ToErrorResponse(err).Code != "NoSuchObjectLockConfiguration" {
			return info, mapErr(op, key, oi.VersionID, false, fmt.Errorf("legal hold: %w", err))
		}
	} else if lh != nil {
		info.LegalHold = *lh == minio.LegalHoldEnabled
	}
	return info, nil
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key, versionID string) (*archive.Object, error) {
	vid, err := s.resolve(ctx, "get", key, versionID)
	if err != nil {
		return nil, err
	}
	gopts := minio.GetObjectOptions{VersionID: vid, Checksum: true}
	o, err := s.client.GetObject(ctx, s.bucket, key, gopts)
	if err != nil {
		return nil, mapErr("get", key, vid, false, err)
	}
	defer o.Close()
	oi, err := o.Stat()
	if err != nil {
		return nil, mapErr("get", key, vid, false, err)
	}
	data, err := io.ReadAll(o)
	if err != nil {
		// minio-go's own checksum check lands here too.
		return nil, fmt.Errorf("archive: get %s version %s: %w: %w", key, vid, archive.ErrChecksum, mapErr("get", key, vid, false, err))
	}
	info, err := s.infoFrom(ctx, "get", key, oi)
	if err != nil {
		return nil, err
	}
	if info.VersionID != vid {
		return nil, fmt.Errorf("archive: get %s version %s: server answered version %s", key, vid, info.VersionID)
	}
	if err := archive.Verify(key, vid, data, info.SHA256); err != nil {
		return nil, err
	}
	if int64(len(data)) != info.Size {
		return nil, fmt.Errorf("archive: get %s version %s: %d bytes, want %d: %w", key, vid, len(data), info.Size, archive.ErrChecksum)
	}
	return &archive.Object{ObjectInfo: info, Data: data}, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key, versionID string) (archive.ObjectInfo, error) {
	vid, err := s.resolve(ctx, "stat", key, versionID)
	if err != nil {
		return archive.ObjectInfo{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{VersionID: vid, Checksum: true})
	if err != nil {
		return archive.ObjectInfo{}, mapErr("stat", key, vid, false, err)
	}
	return s.infoFrom(ctx, "stat", key, oi)
}

// List implements archive.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[archive.ListEntry, error] {
	return func(yield func(archive.ListEntry, error) bool) {
		if err := archive.ValidatePrefix(prefix); err != nil {
			yield(archive.ListEntry{}, err)
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops minio-go's listing goroutine
		for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				yield(archive.ListEntry{}, mapErr("list", prefix, "", false, o.Err))
				return
			}
			if o.IsDeleteMarker {
				continue
			}
			if !yield(archive.ListEntry{Key: o.Key, VersionID: o.VersionID, Size: o.Size, LastModified: o.LastModified}, nil) {
				return
			}
		}
		if err := ctx.Err(); err != nil {
			yield(archive.ListEntry{}, fmt.Errorf("archive: list %s: %w", prefix, err))
		}
	}
}

func needVersion(op, key, versionID string) error {
	if err := archive.ValidateKey(key); err != nil {
		return err
	}
	if versionID == "" {
		return fmt.Errorf("archive: %s %s: empty version id: %w", op, key, archive.ErrInvalid)
	}
	return nil
}

// SetLegalHold implements archive.Store.
func (s *Store) SetLegalHold(ctx context.Context, key, versionID string, on bool) error {
	if err := needVersion("legal-hold", key, versionID); err != nil {
		return err
	}
	status := minio.LegalHoldDisabled
	if on {
		status = minio.LegalHoldEnabled
	}
	err := s.client.PutObjectLegalHold(ctx, s.bucket, key, minio.PutObjectLegalHoldOptions{VersionID: versionID, Status: &status})
	if err != nil {
		return mapErr("legal-hold", key, versionID, true, err)
	}
	return nil
}

// ExtendRetention implements archive.Store. It refuses a shorter date itself
// before asking the server (which refuses it too, for COMPLIANCE and for
// GOVERNANCE without the bypass this package never sends).
func (s *Store) ExtendRetention(ctx context.Context, key, versionID string, until time.Time) error {
	if err := needVersion("retention", key, versionID); err != nil {
		return err
	}
	cur, err := s.Stat(ctx, key, versionID)
	if err != nil {
		return err
	}
	until = ceilSecond(until)
	if until.Before(cur.Retention.RetainUntil) {
		return &archive.RefusedError{Op: "retention", Key: key, VersionID: versionID,
			Reason: fmt.Sprintf("retain-until %s is earlier than %s",
				until.Format(time.RFC3339), cur.Retention.RetainUntil.Format(time.RFC3339))}
	}
	if until.Equal(cur.Retention.RetainUntil) {
		return nil
	}
	mode := minio.RetentionMode(cur.Retention.Mode)
	if !mode.IsValid() {
		mode = minio.Compliance
	}
	return s.putRetention(ctx, key, versionID, mode, until)
}

// putRetention sends a retention as given, with no check of ours.
func (s *Store) putRetention(ctx context.Context, key, versionID string, mode minio.RetentionMode, until time.Time) error {
	err := s.client.PutObjectRetention(ctx, s.bucket, key, minio.PutObjectRetentionOptions{
		Mode: &mode, RetainUntilDate: &until, VersionID: versionID,
	})
	if err != nil {
		return mapErr("retention", key, versionID, true, err)
	}
	return nil
}

// Delete implements archive.Store. It never sends the governance bypass.
func (s *Store) Delete(ctx context.Context, key, versionID string) error {
	if err := needVersion("delete", key, versionID); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{VersionID: versionID})
	if err != nil {
		return mapErr("delete", key, versionID, true, err)
	}
	return nil
}
