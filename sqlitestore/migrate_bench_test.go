package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/uuid"
)

// BenchmarkMigrateSchema2 times the upgrade of a store written before schema
// version 3 (payloads and idempotency results stored as BLOBs) to TEXT:
// the Open that runs it. FLUX_BENCH_MIGRATE_EVENTS sets the number of
// events (default 100,000); the operations doc quotes 1,000,000:
//
//	FLUX_BENCH_MIGRATE_EVENTS=1000000 go test -run '^$' -bench MigrateSchema2 -benchtime 3x ./sqlitestore
func BenchmarkMigrateSchema2(b *testing.B) {
	events := 100_000
	if v := os.Getenv("FLUX_BENCH_MIGRATE_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("FLUX_BENCH_MIGRATE_EVENTS=%q: want a positive number of events", v)
		}
		events = n
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "schema2.db")
	commands := writeSchema2(b, src, events)
	fi, err := os.Stat(src)
	if err != nil {
		b.Fatal(err)
	}
	var walMiB float64 // the write-ahead log the upgrade leaves until a checkpoint truncates it
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst := filepath.Join(dir, fmt.Sprintf("copy%d.db", i))
		copyFile(b, src, dst)
		b.StartTimer()
		s, err := Open(context.Background(), dst, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if wal, err := os.Stat(dst + "-wal"); err == nil {
			walMiB = max(walMiB, float64(wal.Size())/(1<<20))
		}
		m := s.Migrated()
		if m.From != 2 || m.Converted["events.payload"] != int64(events) || m.Converted["idempotency_keys.result"] != int64(commands) {
			b.Fatalf("Migrated() = %+v, want %d payloads and %d results converted from version 2", m, events, commands)
		}
		s.Close()
		os.Remove(dst)
		b.StartTimer()
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
	b.ReportMetric(walMiB, "wal-MiB")
}

// writeSchema2 writes a store as versions before schema 3 left it: the
// version-2 layout, payloads and idempotency results bound as []byte.
// Every 100-event stream has an idempotency record and a snapshot.
func writeSchema2(b *testing.B, path string, events int) (commands int) {
	b.Helper()
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", dsn(path, (*Options)(nil).withDefaults(), false))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`DROP TABLE idempotency_keys;
		CREATE TABLE idempotency_keys (idempotency_key TEXT PRIMARY KEY, result BLOB NOT NULL, created_at TEXT NOT NULL);
		PRAGMA user_version = 2`); err != nil {
		b.Fatal(err)
	}
	var ids uuid.Generator
	now := formatTime(time.Now())
	const perStream, perTx = 100, 10_000
	for from := 0; from < events; from += perTx {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		ins, err := tx.Prepare(`INSERT INTO events ` + insertColumns + ` VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			b.Fatal(err)
		}
		for i := from; i < min(from+perTx, events); i++ {
			stream := fmt.Sprintf("acc-%07d", i/perStream)
			payload, _ := json.Marshal(Deposited{Amount: int64(i), Currency: "EUR", Note: "monthly savings transfer"})
			id := ids.New()
			if _, err := ins.Exec(id, stream, "Account", "Deposited", 1, payload, nil, now, flux.DefaultRequestID, id, "", i%perStream+1); err != nil {
				b.Fatal(err)
			}
			if i%perStream == perStream-1 {
				commands++
				if _, err := tx.Exec(`INSERT INTO idempotency_keys VALUES (?, ?, ?)`, "cmd-"+stream, []byte(`{"id":"`+stream+`"}`), now); err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(`INSERT INTO aggregate_snapshots (aggregate_id, aggregate_type, version, schema_version, data, created_at) VALUES (?, 'Account', ?, 1, ?, ?)`,
					stream, perStream, fmt.Sprintf(`{"Balance":%d,"Count":%d}`, i, perStream), now); err != nil {
					b.Fatal(err)
				}
			}
		}
		ins.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	return commands
}

func copyFile(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}
