package s3store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/archivetest"
)

// server is one S3 server the tests can run against, named by environment
// variables that scripts/s3-servers.sh prints.
type server struct {
	name string
	env  string // endpoint URL variable
	// dataEnv names a variable holding the server's data directory, for
	// the corruption case; "" if the server's layout is not plain files.
	dataEnv string
	// corruptPath maps (data dir, bucket, key) to the file holding the
	// latest version of key.
	corruptPath func(dir, bucket, key string) string
	knownGaps   map[string]string
}

var servers = []server{
	{name: "MinIO", env: "CUSTODE_TEST_MINIO"},
	{
		name: "versitygw", env: "CUSTODE_TEST_VERSITYGW", dataEnv: "CUSTODE_TEST_VERSITYGW_DIR",
		corruptPath: func(dir, bucket, key string) string { return dir + "/" + bucket + "/" + key },
		knownGaps: map[string]string{
			// Seen with v1.8.0: the locked version stays undeletable (the
			// server refuses with 403), but HEAD of a non-latest version
			// omits the x-amz-object-lock-* headers and minio-go cannot
			// parse its GetObjectRetention answer, so Stat cannot report
			// the retention.
			"ForeignOverwriteKeepsLockedVersion": "versitygw v1.8.0 drops the lock headers of a non-latest version",
			// Seen with v1.8.0: a version under legal hold is deleted once
			// its retain-until has passed.
			"LegalHoldBlocksDeleteAfterExpiry": "versitygw v1.8.0 lets a held version be deleted after retain-until",
		},
	},
}

// endpoint returns the server's URL, or skips the test (fails it under CI)
// when the variable is unset.
func endpoint(t *testing.T, srv server) string {
	t.Helper()
	u := os.Getenv(srv.env)
	if u == "" {
		msg := srv.env + " is not set: run `eval \"$(scripts/s3-servers.sh)\"` to start MinIO and versitygw for these tests"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set: S3 tests must run)")
		}
		t.Skip(msg)
	}
	return u
}

func newStore(t *testing.T, url string) *Store {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	s, err := New(Config{
		Endpoint:  url,
		AccessKey: os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"),
		Bucket:    "custode-test-" + hex.EncodeToString(rnd[:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			url := endpoint(t, srv)
			opts := archivetest.Options{
				KnownGaps: srv.knownGaps,
				Overwrite: func(t *testing.T, st archive.Store, key string, data []byte) {
					s := st.(*Store)
					// A plain PUT, as any S3 client may send: no condition,
					// no lock headers (the bucket default applies).
					_, err := s.Client().PutObject(t.Context(), s.Bucket(), key,
						strings.NewReader(string(data)), int64(len(data)), minio.PutObjectOptions{})
					if err != nil {
						t.Fatalf("foreign PUT: %v", err)
					}
				},
			}
			if dir := os.Getenv(srv.dataEnv); srv.dataEnv != "" && dir != "" {
				opts.Corrupt = func(t *testing.T, st archive.Store, key, _ string) {
					s := st.(*Store)
					path := srv.corruptPath(dir, s.Bucket(), key)
					fi, err := os.Stat(path)
					if err != nil {
						t.Fatalf("corrupt: %v", err)
					}
					b := make([]byte, fi.Size())
					copy(b, "XXXX altered bytes, same length")
					if err := os.WriteFile(path, b, fi.Mode()); err != nil {
						t.Fatalf("corrupt: %v", err)
					}
				}
			}
			archivetest.Run(t, func(t *testing.T) archive.Store { return newStore(t, url) }, opts)
		})
	}
}

// TestServerEnforcesLock checks that the server itself, not this package,
// refuses what COMPLIANCE forbids, and that its answers map to ErrWORM.
func TestServerEnforcesLock(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			s := newStore(t, endpoint(t, srv))
			ctx := t.Context()
			until := ceilSecond(time.Now().Add(time.Hour))
			info, err := s.Put(ctx, "locked", []byte("x"), archive.PutOptions{
				Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: until}})
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name string
				do   func() error
			}{
				{"shorten", func() error {
					return s.putRetention(ctx, "locked", info.VersionID, minio.Compliance, until.Add(-30*time.Minute))
				}},
				{"switch to GOVERNANCE", func() error {
					return s.putRetention(ctx, "locked", info.VersionID, minio.Governance, until.Add(time.Hour))
				}},
				{"delete with governance bypass", func() error {
					err := s.client.RemoveObject(ctx, s.bucket, "locked",
						minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true})
					if err != nil {
						return mapErr("delete", "locked", info.VersionID, true, err)
					}
					return nil
				}},
			}
			for _, tt := range tests {
				err := tt.do()
				if !errors.Is(err, archive.ErrWORM) {
					t.Errorf("%s: error %v, want ErrWORM", tt.name, err)
				} else {
					t.Logf("%s: %v", tt.name, err)
				}
			}
			got, err := s.Get(ctx, "locked", info.VersionID)
			if err != nil || !got.Retention.RetainUntil.Equal(until) || got.Retention.Mode != archive.Compliance {
				t.Errorf("after refusals: %+v, %v; want COMPLIANCE until %v", got, err, until)
			}
		})
	}
}

func TestMapErr(t *testing.T) {
	tests := []struct {
		op   string
		worm bool
		resp minio.ErrorResponse
		want error
	}{
		{"delete", true, minio.ErrorResponse{StatusCode: http.StatusBadRequest, Code: "InvalidRequest"}, archive.ErrWORM},
		{"delete", true, minio.ErrorResponse{StatusCode: http.StatusForbidden, Code: "AccessDenied"}, archive.ErrWORM},
		{"retention", true, minio.ErrorResponse{StatusCode: http.StatusForbidden, Code: "AccessDenied"}, archive.ErrWORM},
		{"get", false, minio.ErrorResponse{StatusCode: http.StatusForbidden, Code: "AccessDenied"}, nil},
		{"get", false, minio.ErrorResponse{StatusCode: http.StatusNotFound, Code: "NoSuchKey"}, archive.ErrNotFound},
		{"get", false, minio.ErrorResponse{StatusCode: http.StatusNotFound, Code: "NoSuchVersion"}, archive.ErrNotFound},
		{"get", false, minio.ErrorResponse{StatusCode: http.StatusNotFound, Code: "NoSuchBucket"}, nil},
		{"put", true, minio.ErrorResponse{StatusCode: http.StatusPreconditionFailed, Code: "PreconditionFailed"}, archive.ErrExists},
	}
	for _, tt := range tests {
		err := mapErr(tt.op, "k", "v", tt.worm, tt.resp)
		for _, target := range []error{archive.ErrWORM, archive.ErrNotFound, archive.ErrExists} {
			if got := errors.Is(err, target); got != (target == tt.want) {
				t.Errorf("mapErr(%s, %d %s): errors.Is(%q) = %v", tt.op, tt.resp.StatusCode, tt.resp.Code, target, got)
			}
		}
	}
}

func TestNewRejectsBadEndpoint(t *testing.T) {
	for _, ep := range []string{"", "127.0.0.1:9000", "ftp://x", "http://"} {
		if _, err := New(Config{Endpoint: ep, Bucket: "b"}); !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("New(%q): %v, want ErrInvalid", ep, err)
		}
	}
}
