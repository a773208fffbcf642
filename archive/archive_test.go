package archive_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"seg/000001", true},
		{"cas/0a1b", true},
		{"a.b_c-d=e+f", true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{"a/./b", false},
		{"a/../b", false},
		{"a b", false},
		{"a~v", false},
		{"è", false},
		{string(make([]byte, archive.MaxKeyLen+1)), false},
	}
	for _, tt := range tests {
		err := archive.ValidateKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("ValidateKey(%q) = %v, not ErrInvalid", tt.key, err)
		}
	}
}

func TestRefusedErrorIs(t *testing.T) {
	cause := errors.New("403 AccessDenied")
	var err error = &archive.RefusedError{Op: "delete", Key: "k", VersionID: "v1", Err: cause}
	err = fmt.Errorf("sweeper: %w", err)
	if !errors.Is(err, archive.ErrWORM) {
		t.Error("a wrapped RefusedError does not match ErrWORM")
	}
	if !errors.Is(err, cause) {
		t.Error("a RefusedError does not unwrap to the server's error")
	}
	if errors.Is(err, archive.ErrNotFound) {
		t.Error("a RefusedError matches ErrNotFound")
	}
	var re *archive.RefusedError
	if !errors.As(err, &re) || re.VersionID != "v1" {
		t.Errorf("errors.As = %v, %+v", re != nil, re)
	}
}

func TestContentKey(t *testing.T) {
	// sha256("abc"), as sha256sum prints it.
	const want = "cas/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := archive.ContentKey("cas/", []byte("abc")); got != want {
		t.Errorf("ContentKey = %s, want %s", got, want)
	}
}

// A sealed ledger segment goes into the archive under its content key,
// locked in COMPLIANCE mode for 30 months.
func ExamplePutContent() {
	dir, err := os.MkdirTemp("", "archive-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := localstore.Open(dir, localstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	segment := []byte("abc")
	info, err := archive.PutContent(ctx, store, "ledger/segments/", segment, archive.PutOptions{
		Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: time.Now().AddDate(0, 30, 0)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Key)

	err = store.Delete(ctx, info.Key, info.VersionID)
	fmt.Println(errors.Is(err, archive.ErrWORM))
	// Output:
	// ledger/segments/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
	// true
}
