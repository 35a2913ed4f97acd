package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/uuid"
	"github.com/go-sql-driver/mysql"
)

// The benchmarks compare the framework with the raw driver on the same
// table, connection settings and commit granularity. Each has a "raw" and
// a "flux" sub-benchmark (flux.Repository Save/Load); the single-writer
// ones also have "store" (Store.Append/ReadStream alone, without encoding
// or decoding payloads), which splits the cost between the store and the
// repository. Pipe the output through internal/benchratio for medians
// and ratios:
//
//	cd mysqlstore && FLUX_TEST_MYSQL_DSN='root@tcp(127.0.0.1:3306)/test' GOWORK=off \
//		go test -run '^$' -bench . -count 6 . | (cd .. && go run ./internal/benchratio)
//
// The raw appends write the same rows with one multi-row INSERT per
// commit and AUTO_INCREMENT ids: no log head, no version check. The raw
// loads run the store's own SELECT and scan every column.

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

// benchStore opens a store on a fresh database and returns it with a
// repository and the database's DSN.
func benchStore(b *testing.B) (*Store, *flux.Repository, string) {
	b.Helper()
	dsn := NewTestDatabase(b)
	s, err := Open(context.Background(), dsn, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	return s, repo, dsn
}

// rawDB opens a second pool on the same database with the settings Open
// forces, sized like the store's.
func rawDB(b *testing.B, dsn string) *sql.DB {
	b.Helper()
	o := (*Options)(nil).withDefaults()
	cfg, err := driverConfig(dsn, o)
	if err != nil {
		b.Fatal(err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxOpenConns)
	b.Cleanup(func() { db.Close() })
	return db
}

var deposit = Deposited{Amount: 1250, Currency: "EUR", Note: "monthly savings transfer"}

const rawColumns = `(event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version)`

// rawInsert writes n events to stream in one transaction with one
// multi-row INSERT, as a hand-written database/sql program would.
func rawInsert(b *testing.B, db *sql.DB, ids *uuid.Generator, stream string, from int64, n int) {
	payload, _ := json.Marshal(deposit)
	now := formatTime(time.Now())
	var q strings.Builder
	q.WriteString(`INSERT INTO events ` + rawColumns + ` VALUES `)
	args := make([]any, 0, 12*n)
	for i := 0; i < n; i++ {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
		id := ids.New()
		args = append(args, id, stream, "Account", "Deposited", 1, json.RawMessage(payload), nil, now, flux.DefaultRequestID, id, "", from+int64(i)+1)
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(q.String(), args...); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func benchmarkAppend(b *testing.B, perSave int) {
	b.Run("raw", func(b *testing.B) {
		_, _, dsn := benchStore(b)
		db := rawDB(b, dsn)
		var ids uuid.Generator
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rawInsert(b, db, &ids, "acc-raw", int64(i*perSave), perSave)
		}
		b.ReportMetric(float64(b.N*perSave)/b.Elapsed().Seconds(), "events/s")
	})
	// store: the same appends through Store.Append, without the
	// repository (encoding, metadata).
	b.Run("store", func(b *testing.B) {
		s, _, _ := benchStore(b)
		ctx := context.Background()
		payload, _ := json.Marshal(deposit)
		var ids uuid.Generator
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			evs := make([]flux.EventData, perSave)
			for j := range evs {
				evs[j] = flux.EventData{EventID: ids.New(), EventName: "Deposited", EventVersion: 1, Payload: payload,
					Metadata: flux.Metadata{RequestID: flux.DefaultRequestID}, OccurredAt: time.Now()}
			}
			if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "acc-store", AggregateType: "Account",
				Expected: flux.ExpectedVersion(i * perSave), Events: evs}}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*perSave)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("flux", func(b *testing.B) {
		_, repo, _ := benchStore(b)
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

// BenchmarkAppendConcurrent4 runs 4 writers on 4 distinct streams, one
// event per commit. The raw writers insert with AUTO_INCREMENT ids and
// commit in parallel; flux's appends queue on the log head, so this is the
// price of a gap-free, commit-ordered global log.
func BenchmarkAppendConcurrent4(b *testing.B) {
	const writers = 4
	run := func(b *testing.B, save func(w int, i int64)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var done int64
				for next.Add(1) <= int64(b.N) {
					save(w, done)
					done++
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("raw", func(b *testing.B) {
		_, _, dsn := benchStore(b)
		db := rawDB(b, dsn)
		var ids uuid.Generator
		run(b, func(w int, i int64) { rawInsert(b, db, &ids, fmt.Sprintf("acc-raw-%d", w), i, 1) })
	})
	b.Run("flux", func(b *testing.B) {
		_, repo, _ := benchStore(b)
		accs := make([]*Account, writers)
		for w := range accs {
			accs[w] = new(Account)
			accs[w].SetID(fmt.Sprintf("acc-flux-%d", w))
		}
		ctx := context.Background()
		run(b, func(w int, _ int64) {
			flux.Raise(accs[w], deposit)
			if err := repo.Save(ctx, accs[w]); err != nil {
				b.Error(err)
			}
		})
	})
}

func benchmarkLoad(b *testing.B, events int) {
	s, repo, dsn := benchStore(b)
	db := rawDB(b, dsn)
	ctx := context.Background()
	payload, _ := json.Marshal(deposit)
	var ids uuid.Generator
	for from := 0; from < events; from += 1000 {
		n := min(1000, events-from)
		evs := make([]flux.EventData, n)
		for i := range evs {
			evs[i] = flux.EventData{EventID: ids.New(), EventName: "Deposited", EventVersion: 1, Payload: payload,
				Metadata: flux.Metadata{RequestID: flux.DefaultRequestID}, OccurredAt: time.Now()}
		}
		if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "acc", AggregateType: "Account",
			Expected: flux.ExpectedVersion(from), Events: evs}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rows, err := db.QueryContext(ctx, selectColumns+` WHERE aggregate_id = ? ORDER BY version`, "acc")
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
			if n != events {
				b.Fatalf("read %d rows", n)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
	})
	// store: the store's own part of a load, without decoding payloads.
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
