package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/storetest/storebench"
	"github.com/fluxcapacitor/flux/uuid"
)

// The benchmarks compare the framework with the raw driver on the same
// table, settings and commit granularity. Each has a "raw" and a "flux"
// sub-benchmark; pipe the output through internal/benchratio for medians
// and ratios:
//
//	go test -run '^$' -bench . -count 6 ./sqlitestore | go run ./internal/benchratio

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

func benchRepo(b *testing.B) (*Store, *flux.Repository) {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
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
	return s, repo
}

// rawDB opens a second pool on the same file with the same settings as
// the store's write connection.
func rawDB(b *testing.B, s *Store) *sql.DB {
	db, err := sql.Open("sqlite", dsn(s.path, s.opts, false))
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	return db
}

var deposit = Deposited{Amount: 1250, Currency: "EUR", Note: "monthly savings transfer"}

func rawInsert(b *testing.B, db *sql.DB, stream string, from int64, n int) {
	encoded, _ := json.Marshal(deposit)
	payload := string(encoded) // TEXT, as the store writes it
	var ids uuid.Generator
	now := formatTime(time.Now())
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO events ` + insertColumns + ` VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		id := ids.New()
		if _, err := stmt.Exec(id, stream, "Account", "Deposited", 1, payload, nil, now, flux.DefaultRequestID, id, "", from+int64(i)+1); err != nil {
			b.Fatal(err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func benchmarkAppend(b *testing.B, perSave int) {
	b.Run("raw", func(b *testing.B) {
		s, _ := benchRepo(b)
		db := rawDB(b, s)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rawInsert(b, db, "acc-raw", int64(i*perSave), perSave)
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

func benchmarkLoad(b *testing.B, events int) {
	s, repo := benchRepo(b)
	db := rawDB(b, s)
	for from := 0; from < events; from += 1000 {
		rawInsert(b, db, "acc", int64(from), min(1000, events-from))
	}
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rows, err := s.rdb.QueryContext(ctx, selectColumns+` WHERE aggregate_id = ? ORDER BY version`, "acc")
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var pos, version int64
				var evVersion int
				var stream, aggType, eventID, name, occurred, req, corr, caus string
				var payload []byte
				var metadata sql.NullString
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

// BenchmarkLoadSnapshots: see storebench.LoadSnapshots.
//
//	go test -run '^$' -bench LoadSnapshots -count 6 ./sqlitestore | go run ./internal/benchratio
func BenchmarkLoadSnapshots(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	storebench.LoadSnapshots(b, s)
}

// Profile events: the same four fields, marked as personal data or not.
type PlainProfile struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Phone  string `json:"phone"`
	Street string `json:"street"`
}

type MarkedProfile struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
	Phone  string `json:"phone" pii:"data"`
	Street string `json:"street" pii:"data"`
}

type Customer struct {
	flux.Root
	Email string
}

func (c *Customer) Apply(e any) {
	switch e := e.(type) {
	case PlainProfile:
		c.Email = e.Email
	case MarkedProfile:
		c.Email = e.Email
	}
}

func piiRepo(b *testing.B) *flux.Repository {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	reg, err := flux.NewRegistry(flux.AggregateType("Customer", func() *Customer { return new(Customer) },
		flux.EventType[PlainProfile]("PlainProfile", 1),
		flux.EventType[MarkedProfile]("MarkedProfile", 1)))
	if err != nil {
		b.Fatal(err)
	}
	prot, err := pii.New(pii.Config{Keys: s, Secret: []byte("bench-secret-0123456789abcdefghij")})
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg, Protector: prot})
	if err != nil {
		b.Fatal(err)
	}
	return repo
}

func profileEvent(marked bool, id string) any {
	p := PlainProfile{UserID: id, Email: "ada.lovelace@example.com", Name: "Augusta Ada King", Phone: "+44 20 7946 0000", Street: "12 St James's Square"}
	if marked {
		return MarkedProfile(p)
	}
	return p
}

// BenchmarkPersonalDataSave saves one event with four personal fields
// (warm key cache) against the same event unmarked. Target ≤ 1.5× (≥ 0.67).
func BenchmarkPersonalDataSave(b *testing.B) {
	for _, variant := range []string{"baseline", "marked"} {
		b.Run(variant, func(b *testing.B) {
			repo := piiRepo(b)
			ctx := context.Background()
			c := new(Customer)
			c.SetID("cust-1")
			for i := 0; i < b.N; i++ {
				flux.Raise(c, profileEvent(variant == "marked", "cust-1"))
				if err := repo.Save(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPersonalDataLoad100 loads a 100-event aggregate whose events
// have four personal fields (warm key cache) against the same unmarked.
func BenchmarkPersonalDataLoad100(b *testing.B) {
	for _, variant := range []string{"baseline", "marked"} {
		b.Run(variant, func(b *testing.B) {
			repo := piiRepo(b)
			ctx := context.Background()
			c := new(Customer)
			c.SetID("cust-1")
			for i := 0; i < 100; i++ {
				flux.Raise(c, profileEvent(variant == "marked", "cust-1"))
			}
			if err := repo.Save(ctx, c); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got, err := flux.Load[*Customer](ctx, repo, "cust-1")
				if err != nil || got.Email != "ada.lovelace@example.com" {
					b.Fatalf("load = %+v, %v", got, err)
				}
			}
		})
	}
}
