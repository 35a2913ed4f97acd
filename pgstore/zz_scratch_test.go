package pgstore

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/internal/uuid"
	"github.com/jackc/pgx/v5"
)

func BenchmarkScratch(b *testing.B) {
	ctx := context.Background()
	schema := fmt.Sprintf("scratch_%d", time.Now().UnixNano())
	s, err := Open(ctx, os.Getenv("FLUX_TEST_POSTGRES_DSN"), &Options{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); s.Close() }()
	var g uuid.Generator
	mk := func(id string, exp int64) flux.StreamAppend {
		return flux.StreamAppend{StreamID: id, AggregateType: "T", Expected: flux.ExpectedVersion(exp), Events: []flux.EventData{{EventID: g.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`), OccurredAt: time.Now()}}}
	}
	b.Run("append", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{mk("a", int64(i))}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	var tb, tq, tc time.Duration
	b.Run("phases", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			st := mk("p", int64(i))
			t0 := time.Now()
			tx, _ := s.pool.Begin(ctx)
			t1 := time.Now()
			batch := &pgx.Batch{}
			batch.Queue(s.q.advanceHead, 1)
			q, args := s.q.insertEvents(&st, 1)
			batch.Queue(q, args...)
			batch.Queue(s.q.notify, s.channel)
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			tx.Commit(ctx)
			t3 := time.Now()
			tb += t1.Sub(t0)
			tq += t2.Sub(t1)
			tc += t3.Sub(t2)
		}
		b.Logf("N=%d begin %v batch %v commit %v", b.N, tb/time.Duration(b.N), tq/time.Duration(b.N), tc/time.Duration(b.N))
		tb, tq, tc = 0, 0, 0
	})
	b.Run("raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			tx, _ := s.pool.Begin(ctx)
			t1 := time.Now()
			batch := &pgx.Batch{}
			batch.Queue(`INSERT INTO `+s.q.table("events")+` (id, event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
				int64(1e12)+int64(i), g.New(), "raw", "T", "E", 1, []byte(`{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`), nil, time.Now(), "r", "c", "", i+1)
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			tx.Commit(ctx)
			t3 := time.Now()
			tb += t1.Sub(t0)
			tq += t2.Sub(t1)
			tc += t3.Sub(t2)
		}
		b.Logf("N=%d begin %v batch %v commit %v", b.N, tb/time.Duration(b.N), tq/time.Duration(b.N), tc/time.Duration(b.N))
		tb, tq, tc = 0, 0, 0
	})
}
