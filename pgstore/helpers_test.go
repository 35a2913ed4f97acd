package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/uuid"
	"github.com/jackc/pgx/v5"
)

// The PostgreSQL tests run against the server named by
// FLUX_TEST_POSTGRES_DSN, e.g.
//
//	FLUX_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test ./...
//
// They skip when it is unset, unless FLUX_TEST_REQUIRE is set (CI), and fail
// when it is set but the server cannot be reached. Every store gets a fresh
// schema of its own, dropped with CASCADE when its test ends, so tests run in
// parallel and leave nothing behind.
const dsnVar = "FLUX_TEST_POSTGRES_DSN"

var ids uuid.Generator

// testDSN returns the test server's DSN, or skips t when there is none.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(dsnVar)
	if dsn == "" {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatalf("%s is not set and FLUX_TEST_REQUIRE is: set it to a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", dsnVar)
		}
		t.Skipf("%s is not set; set it to a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL tests", dsnVar)
	}
	return dsn
}

var schemaSeq atomic.Int64

// freshSchema returns a schema name no other test uses and drops that
// schema (CASCADE) when t ends. Register it before opening stores on it, so
// the stores close first.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := fmt.Sprintf("flux_test_%d_%d_%s", os.Getpid(), schemaSeq.Add(1), hex.EncodeToString(b[:]))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openTest opens a Store on a fresh schema of the test server.
func openTest(t testing.TB, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	dsn := testDSN(t)
	var o pgstore.Options
	if opts != nil {
		o = *opts
	}
	o.Schema = freshSchema(t, dsn)
	return openOn(t, dsn, &o)
}

// openOn opens a Store with opts (whose schema the caller made fresh).
func openOn(t testing.TB, dsn string, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("open the test server (%s): %v", dsnVar, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func event(name, payload string) flux.EventData {
	return flux.EventData{
		EventID:      ids.New(),
		EventName:    name,
		EventVersion: 1,
		Payload:      []byte(payload),
		Metadata:     flux.Metadata{RequestID: flux.DefaultRequestID},
		OccurredAt:   time.Now(),
	}
}

func streamOf(id string, exp flux.ExpectedVersion, evs ...flux.EventData) flux.StreamAppend {
	return flux.StreamAppend{StreamID: id, AggregateType: "Thing", Expected: exp, Events: evs}
}

func readStream(t testing.TB, s flux.EventStore, id string) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadStream(context.Background(), id, flux.ReadStreamOptions{}) {
		if err != nil {
			t.Fatalf("read stream %q: %v", id, err)
		}
		out = append(out, r)
	}
	return out
}

func readAll(t testing.TB, s flux.EventStore) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatalf("read all: %v", err)
		}
		out = append(out, r)
	}
	return out
}
