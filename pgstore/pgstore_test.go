package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTest(t, nil) },
	})
}

func TestProjectTx(t *testing.T) {
	testDSN(t)
	storetest.RunProjectTx(t, storetest.TxHarness[pgx.Tx]{
		New: func(t *testing.T) (projection.TxStore[pgx.Tx], projection.CheckpointStore) {
			s := openTest(t, nil)
			counters := pgx.Identifier{s.Schema(), "counters"}.Sanitize()
			if _, err := s.Pool().Exec(t.Context(), `CREATE TABLE `+counters+` (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			return s, s
		},
		// ProjectTx puts the store's schema first on the search path, so
		// the read model's table needs no qualification.
		Increment: func(ctx context.Context, tx pgx.Tx, key string) error {
			_, err := tx.Exec(ctx, `INSERT INTO counters (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1`, key)
			return err
		},
		Count: func(ctx context.Context, t *testing.T, store projection.TxStore[pgx.Tx], key string) int {
			s := store.(*pgstore.Store)
			var n int
			err := s.Pool().QueryRow(ctx, `SELECT n FROM `+pgx.Identifier{s.Schema(), "counters"}.Sanitize()+` WHERE k = $1`, key).Scan(&n)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				t.Fatal(err)
			}
			return n
		},
	})
}

func TestWake(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	writer := openOn(t, dsn, &pgstore.Options{Schema: schema})
	// A second store on the same schema, as another process would be: only
	// PostgreSQL's NOTIFY can wake it.
	follower := openOn(t, dsn, &pgstore.Options{Schema: schema})
	other := openTest(t, nil) // another schema: must not be woken

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fromWriter, err := writer.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromFollower, err := follower.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan struct{}{"the appending store": fromWriter, "another store on the schema": fromFollower} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not woken after an append", name)
		}
	}
	select {
	case <-fromOther:
		t.Fatal("a store on another schema was woken")
	case <-time.After(200 * time.Millisecond):
	}

	// After Close, Wake reports the closed store.
	follower.Close()
	if _, err := follower.Wake(ctx); !errors.Is(err, flux.ErrStoreClosed) {
		t.Fatalf("wake after close: err = %v", err)
	}
}

func TestNewLeavesThePoolOpen(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := pgstore.New(t.Context(), pool, &pgstore.Options{Schema: freshSchema(t, dsn)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatalf("the pool New was given is unusable after Close: %v", err)
	}
	if _, err := s.Head(t.Context()); !errors.Is(err, flux.ErrStoreClosed) {
		t.Fatalf("head after close: err = %v", err)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)

	t.Run("concurrent first migrations all succeed", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := pgstore.Open(t.Context(), dsn, &pgstore.Options{Schema: schema})
				if err == nil {
					err = s.Migrate(t.Context()) // and once more
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("migration %d: %v", i, err)
			}
		}
	})

	s := openOn(t, dsn, &pgstore.Options{Schema: schema, SkipMigrate: true})
	versions := pgx.Identifier{schema, "flux_schema_migrations"}.Sanitize()
	var n, top int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*), max(version) FROM `+versions).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != top || n < 3 {
		t.Fatalf("schema versions: %d rows up to %d, want one row per step", n, top)
	}

	t.Run("a schema from a newer build is refused", func(t *testing.T) {
		if _, err := s.Pool().Exec(t.Context(), `INSERT INTO `+versions+` (version, name) VALUES (999, 'from the future')`); err != nil {
			t.Fatal(err)
		}
		defer s.Pool().Exec(context.Background(), `DELETE FROM `+versions+` WHERE version = 999`)
		err := s.Migrate(t.Context())
		if err == nil || !strings.Contains(err.Error(), "newer than this build") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOptionsAreValidated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts pgstore.Options
		want string
	}{
		{"schema name too long", pgstore.Options{Schema: strings.Repeat("s", 64)}, "at most 63"},
		{"reserved schema name", pgstore.Options{Schema: "pg_flux"}, "reserved"},
		{"NUL in schema name", pgstore.Options{Schema: "a\x00b"}, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := pgstore.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable", &c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Options.Schema") {
				t.Fatalf("err = %v, want one about Options.Schema saying %q", err, c.want)
			}
		})
	}
}

func TestOpenReportsAnUnreachableServer(t *testing.T) {
	t.Parallel()
	// Port 1 on the loopback: nothing listens there, so the connection is
	// refused at once. No test server is needed.
	_, err := pgstore.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", nil)
	if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "cannot connect to PostgreSQL") {
		t.Fatalf("err = %v, want flux.ErrStoreUnavailable saying it cannot connect", err)
	}
	if _, err := pgstore.New(t.Context(), nil, nil); err == nil {
		t.Fatal("New with a nil pool succeeded")
	}
}
