package mysqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux/storetest/storebench"
)

// BenchmarkLoadSnapshots: see storebench.LoadSnapshots.
func BenchmarkLoadSnapshots(b *testing.B) {
	s, _, _ := benchStore(b)
	storebench.LoadSnapshots(b, s)
}

// BenchmarkCatchUp: see storebench.CatchUp. The log holds 1,000,000
// events (FLUX_BENCH_CATCHUP_EVENTS changes it); the raw side is one
// database/sql SELECT of the same rows in position order, on a pool with
// the store's settings.
//
//	cd mysqlstore && FLUX_TEST_MYSQL_DSN=... go test -run '^$' -bench CatchUp -benchtime 1x -count 3 -timeout 30m . | (cd .. && go run ./internal/benchratio)
func BenchmarkCatchUp(b *testing.B) {
	events := storebench.CatchUpEvents(b)
	s, _, dsn := benchStore(b)
	db := rawDB(b, dsn)
	storebench.CatchUp(b, s, events, func(ctx context.Context, upTo int64) (int, error) {
		rows, err := db.QueryContext(ctx, selectColumns+` WHERE id <= ? ORDER BY id`, upTo)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var pos, version int64
			var evVersion int
			var stream, aggType, eventID, name, req, corr, caus string
			var payload, metadata []byte
			var occurred time.Time
			if err := rows.Scan(&pos, &stream, &version, &aggType, &eventID, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus); err != nil {
				return n, err
			}
			n++
		}
		return n, rows.Err()
	})
}

// BenchmarkLiveLatency: see storebench.LiveLatency.
func BenchmarkLiveLatency(b *testing.B) {
	s, _, _ := benchStore(b)
	storebench.LiveLatency(b, s)
}
