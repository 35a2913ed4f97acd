package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii/piitest"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/fluxcapacitor/flux/uuid"
)

var ids uuid.Generator

func openTemp(t testing.TB, opts *sqlitestore.Options) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "flux.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
	})
}

// Two stores on one file behave like two processes: their writes wait for
// each other through SQLite's busy timeout instead of failing.
func TestTwoStoresOnOneFileNeverSeeBusy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	var stores []*sqlitestore.Store
	for i := 0; i < 2; i++ {
		s, err := sqlitestore.Open(t.Context(), path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for i := 0; i < 25; i++ {
				_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{{
					StreamID: fmt.Sprintf("w%d", w), AggregateType: "T", Expected: flux.ExpectedVersion(i),
					Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: time.Now()}},
				}}})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	n := 0
	for _, err := range stores[1].ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 16*25 {
		t.Fatalf("log has %d events, want %d", n, 16*25)
	}
}

func TestOpenReportsAMissingDirectory(t *testing.T) {
	t.Parallel()
	_, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "flux.db"), nil)
	if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	t.Parallel()
	_, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "flux.db"), &sqlitestore.Options{Synchronous: "SOMETIMES"})
	if err == nil || !strings.Contains(err.Error(), "Synchronous") {
		t.Fatalf("err = %v", err)
	}
}

func TestProjectTx(t *testing.T) {
	storetest.RunProjectTx(t, storetest.TxHarness[*sql.Tx]{
		New: func(t *testing.T) (projection.TxStore[*sql.Tx], projection.CheckpointStore) {
			s := openTemp(t, nil)
			createCounters(t, s)
			return s, s
		},
		Increment: func(ctx context.Context, tx *sql.Tx, key string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1`, key)
			return err
		},
		Count: func(ctx context.Context, t *testing.T, store projection.TxStore[*sql.Tx], key string) int {
			var n int
			err := store.(*sqlitestore.Store).DB().QueryRowContext(ctx, `SELECT n FROM counters WHERE k = ?`, key).Scan(&n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				t.Fatal(err)
			}
			return n
		},
	})
}

func TestWakeSignalsAfterAppend(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	ch, err := s.Wake(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "s", AggregateType: "T", Expected: flux.NoStream,
		Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: time.Now()}}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after an append")
	}
}

func TestNoPersonalDataInClear(t *testing.T) {
	piitest.Run(t, piitest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
		Dump: func(t *testing.T, es flux.EventStore) []byte {
			return dumpTables(t, es.(*sqlitestore.Store).DB())
		},
	})
}

// dumpTables returns every row of every table, as text.
func dumpTables(t *testing.T, db *sql.DB) []byte {
	t.Helper()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	var b strings.Builder
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s:", table)
			for _, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, " %v", v)
			}
			b.WriteByte('\n')
		}
		rows.Close()
	}
	if len(tables) < 6 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	return []byte(b.String())
}

// createCounters makes the read-model table of the ProjectTx harness.
func createCounters(t *testing.T, s *sqlitestore.Store) {
	t.Helper()
	err := s.ProjectTx(t.Context(), 0, projection.Checkpoint{Name: "setup", Position: 1, UpdatedAt: time.Now()}, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
