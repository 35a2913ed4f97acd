package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The benchmarks compare the framework with the raw driver on the same
// table, server and commit granularity. Each has a "raw" and a "flux"
// sub-benchmark; pipe the output through internal/benchratio for medians
// and ratios:
//
//	cd pgstore && FLUX_TEST_POSTGRES_DSN=... GOWORK=off go test -run '^$' -bench . -count 6 . | (cd .. && go run ./internal/benchratio)
//
// "raw" is what a careful hand-written pgx program does: explicit ids and
// versions, one INSERT per event sent as one pgx.Batch, BEGIN/COMMIT
// around it; one SELECT scanned into plain variables for loads. It has no
// log head, so BenchmarkAppendConcurrent4/raw shows what PostgreSQL does
// for four writers that never wait for each other, and .../flux what the
// serialised log head (see Store.Append) costs against it. The load
// benchmarks add "store": ReadStream alone, without flux decoding every
// payload into its Go type (which raw does not do either).

type Deposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

type Account struct {
	flux.Root
	Balance int64
	Count   int
}

func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
		a.Count++
	}
}

func benchRepo(b *testing.B) (*pgstore.Store, *flux.Repository) {
	b.Helper()
	s := openTest(b, nil)
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	return s, repo
}

var deposit = Deposited{Amount: 1250, Currency: "EUR", Note: "monthly savings transfer"}

func eventsTable(s *pgstore.Store) string { return pgx.Identifier{s.Schema(), "events"}.Sanitize() }

// rawInsert writes n events to stream in one transaction, as a plain pgx
// program would: one INSERT per event with explicit position and version,
// all sent in one batch.
func rawInsert(b *testing.B, pool *pgxpool.Pool, table, stream string, firstID, fromVersion int64, n int) {
	payload, _ := json.Marshal(deposit)
	now := time.Now().UTC().Truncate(time.Microsecond)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(ctx)
	batch := &pgx.Batch{}
	for i := 0; i < n; i++ {
		id := ids.New()
		batch.Queue(`INSERT INTO `+table+` (id, event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			firstID+int64(i), id, stream, "Account", "Deposited", 1, payload, nil, now, flux.DefaultRequestID, id, "", fromVersion+int64(i)+1)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
}

func benchmarkAppend(b *testing.B, perSave int) {
	b.Run("raw", func(b *testing.B) {
		s, _ := benchRepo(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rawInsert(b, s.Pool(), eventsTable(s), "acc-raw", int64(i*perSave)+1, int64(i*perSave), perSave)
		}
		b.ReportMetric(float64(b.N*perSave)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("flux", func(b *testing.B) {
		_, repo := benchRepo(b)
		ctx := context.Background()
		acc := new(Account)
		acc.SetID("acc-flux")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for j := 0; j < perSave; j++ {
				flux.Raise(acc, deposit)
			}
			if err := repo.Save(ctx, acc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*perSave)/b.Elapsed().Seconds(), "events/s")
	})
}

func BenchmarkAppend1(b *testing.B)   { benchmarkAppend(b, 1) }
func BenchmarkAppend100(b *testing.B) { benchmarkAppend(b, 100) }

// BenchmarkAppendConcurrent4: four goroutines, each saving one event at a
// time to its own stream; ns/op is wall time per event over all four.
func BenchmarkAppendConcurrent4(b *testing.B) {
	const writers = 4
	// split runs b.N operations over the writers; op(w, i) is writer w's
	// i-th operation.
	split := func(b *testing.B, op func(w, i int)) {
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			n := b.N / writers
			if w < b.N%writers {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i++ {
					op(w, i)
				}
			}()
		}
		wg.Wait()
	}
	b.Run("raw", func(b *testing.B) {
		s, _ := benchRepo(b)
		table := eventsTable(s)
		b.ResetTimer()
		split(b, func(w, i int) {
			// Each writer takes positions from its own range: no
			// coordination between writers at all.
			rawInsert(b, s.Pool(), table, fmt.Sprintf("acc-raw-%d", w), int64(w)<<40+int64(i)+1, int64(i), 1)
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("flux", func(b *testing.B) {
		_, repo := benchRepo(b)
		accs := make([]*Account, writers)
		for w := range accs {
			accs[w] = new(Account)
			accs[w].SetID(fmt.Sprintf("acc-flux-%d", w))
		}
		ctx := context.Background()
		b.ResetTimer()
		split(b, func(w, i int) {
			flux.Raise(accs[w], deposit)
			if err := repo.Save(ctx, accs[w]); err != nil {
				b.Error(err)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func benchmarkLoad(b *testing.B, events int) {
	s, repo := benchRepo(b)
	for from := 0; from < events; from += 1000 {
		rawInsert(b, s.Pool(), eventsTable(s), "acc", int64(from)+1, int64(from), min(1000, events-from))
	}
	if _, err := s.Pool().Exec(context.Background(), `ANALYZE `+eventsTable(s)); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		query := `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM ` +
			eventsTable(s) + ` WHERE aggregate_id = $1 ORDER BY version`
		for i := 0; i < b.N; i++ {
			rows, err := s.Pool().Query(ctx, query, "acc")
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var pos, version int64
				var evVersion int
				var stream, aggType, eventID, name, req, corr, caus string
				var payload, metadata []byte
				var occurred time.Time
				if err := rows.Scan(&pos, &stream, &version, &aggType, &eventID, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus); err != nil {
					b.Fatal(err)
				}
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			if n != events {
				b.Fatalf("read %d rows", n)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})
	// store: the store's ReadStream alone, without decoding the events
	// into Go values: what the store adds to raw, apart from the framework.
	b.Run("store", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n := 0
			for _, err := range s.ReadStream(ctx, "acc", flux.ReadStreamOptions{}) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != events {
				b.Fatalf("read %d records", n)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("flux", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			acc, err := flux.Load[*Account](ctx, repo, "acc")
			if err != nil {
				b.Fatal(err)
			}
			if acc.Count != events {
				b.Fatalf("applied %d events", acc.Count)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})
}

func BenchmarkLoad100(b *testing.B)   { benchmarkLoad(b, 100) }
func BenchmarkLoad10000(b *testing.B) { benchmarkLoad(b, 10000) }
