package sqlitestore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/fluxcapacitor/flux/storetest/storebench"
)

// BenchmarkCatchUp: see storebench.CatchUp (FLUX_BENCH_CATCHUP_EVENTS
// changes the size of the log); the raw side is one
// database/sql SELECT of the same rows in position order on the store's
// read pool. Setting up the log takes a while.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x -count 3 ./sqlitestore | go run ./internal/benchratio
func BenchmarkCatchUp(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "catchup.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	storebench.CatchUp(b, s, storebench.CatchUpEvents(b), func(ctx context.Context, upTo int64) (int, error) {
		rows, err := s.rdb.QueryContext(ctx, selectColumns+` WHERE id <= ? ORDER BY id`, upTo)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var pos, version int64
			var evVersion int
			var stream, aggType, eventID, name, occurred, req, corr, caus string
			var payload []byte
			var metadata sql.NullString
			if err := rows.Scan(&pos, &stream, &version, &aggType, &eventID, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus); err != nil {
				return n, err
			}
			n++
		}
		return n, rows.Err()
	})
}

// BenchmarkLiveLatency: see storebench.LiveLatency.
//
//	go test -run '^$' -bench LiveLatency -benchtime 2000x ./sqlitestore
func BenchmarkLiveLatency(b *testing.B) {
	s, _ := benchRepo(b)
	storebench.LiveLatency(b, s)
}
