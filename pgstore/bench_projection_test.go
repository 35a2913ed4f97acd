package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux/storetest/storebench"
)

// BenchmarkLoadSnapshots: see storebench.LoadSnapshots.
func BenchmarkLoadSnapshots(b *testing.B) {
	storebench.LoadSnapshots(b, openTest(b, nil))
}

// BenchmarkCatchUp: see storebench.CatchUp. The log holds 1,000,000
// events (FLUX_BENCH_CATCHUP_EVENTS changes it); the raw side is one pgx
// SELECT of the same rows in position order, streamed.
//
//	cd pgstore && FLUX_TEST_POSTGRES_DSN=... go test -run '^$' -bench CatchUp -benchtime 1x -count 3 -timeout 30m . | (cd .. && go run ./internal/benchratio)
func BenchmarkCatchUp(b *testing.B) {
	events := storebench.CatchUpEvents(b)
	s := openTest(b, nil)
	table := eventsTable(s)
	storebench.CatchUp(b, s, events, func(ctx context.Context, upTo int64) (int, error) {
		rows, err := s.Pool().Query(ctx, `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM `+
			table+` WHERE id <= $1 ORDER BY id`, upTo)
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

// BenchmarkLiveLatency: see storebench.LiveLatency; the projection is
// woken by LISTEN/NOTIFY.
//
//	cd pgstore && FLUX_TEST_POSTGRES_DSN=... go test -run '^$' -bench LiveLatency -benchtime 2000x -count 3 .
func BenchmarkLiveLatency(b *testing.B) {
	storebench.LiveLatency(b, openTest(b, nil))
}
