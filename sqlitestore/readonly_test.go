package sqlitestore_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

func appendOne(stream string) flux.AppendRequest {
	return flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: stream, AggregateType: "T", Expected: flux.NoStream,
		Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{"a":1}`), OccurredAt: time.Now()}}}}}
}

func fileSum(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return s[:]
}

// A read-only store reads a file it may not write, writes nothing to it
// and refuses writes.
func TestReadOnlyOpenWritesNothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flux.db")
	w, err := sqlitestore.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(t.Context(), appendOne("s-1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)
	r, err := sqlitestore.Open(t.Context(), path, &sqlitestore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range r.ReadAll(t.Context(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("read %d events, want 1", n)
	}
	if _, err := r.Append(t.Context(), appendOne("s-2")); err == nil {
		t.Fatal("a read-only store appended")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, fileSum(t, path)) {
		t.Fatal("the read-only open changed the file")
	}
}

func TestReadOnlyOpenOfAnEmptyFileSaysMigrate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := sqlitestore.Open(t.Context(), path, &sqlitestore.Options{ReadOnly: true})
	if !errors.Is(err, sqlitestore.ErrNotMigrated) || !strings.Contains(err.Error(), "migrate") {
		t.Fatalf("err = %v", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatal("the read-only open wrote to the file")
	}
	if _, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "missing.db"), &sqlitestore.Options{ReadOnly: true}); err == nil {
		t.Fatal("a read-only open of a missing file succeeded")
	}
}
