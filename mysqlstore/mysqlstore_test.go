package mysqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/internal/uuid"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/storetest"
)

var ids uuid.Generator

// openTemp opens a store on a fresh database of its own.
func openTemp(t testing.TB, opts *mysqlstore.Options) *mysqlstore.Store {
	t.Helper()
	s, err := mysqlstore.Open(t.Context(), mysqlstore.NewTestDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ev(name, payload string) flux.EventData {
	return flux.EventData{EventID: ids.New(), EventName: name, EventVersion: 1, Payload: []byte(payload), OccurredAt: time.Now()}
}

func appendOne(ctx context.Context, s flux.EventStore, stream string, exp flux.ExpectedVersion, evs ...flux.EventData) (flux.AppendResult, error) {
	return s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: stream, AggregateType: "T", Expected: exp, Events: evs}}})
}

func readStream(t testing.TB, s flux.EventStore, id string) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadStream(context.Background(), id, flux.ReadStreamOptions{}) {
		if err != nil {
			t.Fatalf("read %q: %v", id, err)
		}
		out = append(out, r)
	}
	return out
}

func TestConformance(t *testing.T) {
	mysqlstore.ServerDSN(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
	})
}

func TestProjectTx(t *testing.T) {
	mysqlstore.ServerDSN(t)
	storetest.RunProjectTx(t, storetest.TxHarness[*sql.Tx]{
		New: func(t *testing.T) (projection.TxStore[*sql.Tx], projection.CheckpointStore) {
			s := openTemp(t, nil)
			// DDL would commit the projection's transaction: create the
			// read model's table beforehand, as ProjectTx documents.
			if _, err := s.DB().ExecContext(t.Context(), `CREATE TABLE counters (k VARCHAR(64) PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB`); err != nil {
				t.Fatal(err)
			}
			return s, s
		},
		Increment: func(ctx context.Context, tx *sql.Tx, key string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (k, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1`, key)
			return err
		},
		Count: func(ctx context.Context, t *testing.T, store projection.TxStore[*sql.Tx], key string) int {
			var n int
			err := store.(*mysqlstore.Store).DB().QueryRowContext(ctx, `SELECT n FROM counters WHERE k = ?`, key).Scan(&n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				t.Fatal(err)
			}
			return n
		},
	})
}
