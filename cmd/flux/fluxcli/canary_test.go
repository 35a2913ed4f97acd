package fluxcli

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/pii/piitest"
)

// TestCanaryOnEveryBackend is the personal-data canary test with
// production's tools: on SQLite, PostgreSQL and MariaDB/MySQL, canary
// values go in as personal data (events, snapshots, idempotency records,
// a read model in the store's database, the NATS relay's JetStream
// stream, the logs of the command bus), and the database is dumped with
// its own client (sqlite3 .dump, pg_dump, mysqldump) and searched for
// them in clear, hex and base64, before and after Forget.
func TestCanaryOnEveryBackend(t *testing.T) {
	natsURL := os.Getenv("FLUX_TEST_NATS_URL")
	if natsURL == "" {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal("FLUX_TEST_NATS_URL is not set and FLUX_TEST_REQUIRE is: set it, e.g. to nats://127.0.0.1:4222")
		}
		t.Skip("FLUX_TEST_NATS_URL is not set; set it, e.g. to nats://127.0.0.1:4222")
	}
	type target struct {
		name string
		dsn  func(t *testing.T) string
		dump func(t *testing.T, dsn string) []byte
	}
	targets := []target{{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "canary.db") }, dumpSQLite}}
	for _, srv := range testServers(t) {
		switch srv.name {
		case "postgres":
			targets = append(targets, target{srv.name, srv.fresh, dumpPostgres})
		case "mysql":
			targets = append(targets, target{srv.name, srv.fresh, dumpMySQL})
		}
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			dsn := tg.dsn(t)
			var b *Backend
			piitest.Run(t, piitest.Harness{
				New: func(t *testing.T) flux.EventStore {
					var err error
					if b, err = openBackend(context.Background(), dsn, create); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { b.Close() })
					return b.store
				},
				Dump:      func(t *testing.T, _ flux.EventStore) []byte { return tg.dump(t, dsn) },
				ReadModel: func(t *testing.T, _ flux.EventStore) piitest.Table { return newSQLTable(t, b) },
				Relay:     func(t *testing.T, repo *flux.Repository) func(int64) []byte { return relayTo(t, natsURL, repo) },
			})
		})
	}
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (the canary test dumps with the database's own client): %v", name, err)
	}
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

func dumpSQLite(t *testing.T, path string) []byte { return run(t, "sqlite3", path, ".dump") }

func dumpPostgres(t *testing.T, dsn string) []byte {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	schema := q.Get("flux_schema")
	q.Del("flux_schema")
	u.RawQuery = q.Encode()
	return run(t, "pg_dump", "--dbname="+u.String(), "--schema="+schema)
}

func dumpMySQL(t *testing.T, dsn string) []byte {
	cfg, err := mysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		t.Fatal(err)
	}
	host, port := "127.0.0.1", "3306"
	if h, p, ok := strings.Cut(cfg.Addr, ":"); ok {
		host, port = h, p
	}
	args := []string{"--host=" + host, "--port=" + port, "--user=" + cfg.User, "--protocol=tcp", "--skip-extended-insert", cfg.DBName}
	if cfg.Passwd != "" {
		args = append(args, "--password="+cfg.Passwd)
	}
	return run(t, "mysqldump", args...)
}

// sqlTable is the canary read model's table in the store's database.
type sqlTable struct {
	db            *sql.DB
	name, dialect string
}

func newSQLTable(t *testing.T, b *Backend) *sqlTable {
	t.Helper()
	tb := &sqlTable{db: b.db, name: "piitest_people_view", dialect: b.kind}
	if b.schema != "" {
		tb.name = b.schema + "." + tb.name
	}
	if _, err := b.db.Exec(`CREATE TABLE ` + tb.name + ` (id VARCHAR(100) PRIMARY KEY, data TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return tb
}

func (s *sqlTable) Put(ctx context.Context, id string, data []byte) error {
	var err error
	switch s.dialect {
	case "postgres":
		_, err = s.db.ExecContext(ctx, `INSERT INTO `+s.name+` (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = excluded.data`, id, string(data))
	case "mysql":
		_, err = s.db.ExecContext(ctx, `INSERT INTO `+s.name+` (id, data) VALUES (?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data)`, id, string(data))
	default:
		_, err = s.db.ExecContext(ctx, `INSERT INTO `+s.name+` (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data`, id, string(data))
	}
	return err
}

func (s *sqlTable) Delete(ctx context.Context, id string) error {
	q := `DELETE FROM ` + s.name + ` WHERE id = ?`
	if s.dialect == "postgres" {
		q = strings.Replace(q, "?", "$1", 1)
	}
	_, err := s.db.ExecContext(ctx, q, id)
	return err
}

// relayTo runs the NATS relay of repo's store into a fresh JetStream
// stream; the returned function waits until the stream holds head
// messages and returns them, headers and data, raw.
func relayTo(t *testing.T, natsURL string, repo *flux.Repository) func(head int64) []byte {
	t.Helper()
	nc, err := nats.Connect(natsURL, natsrelay.ConnOptions()...)
	if err != nil {
		t.Fatalf("connect to %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strings.ToUpper(randomName(""))
	stream := "FLUXPIITEST_" + suffix
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: repo.Store().(Store), Stream: stream,
		SubjectPrefix: "fluxpiitest" + strings.ToLower(suffix), Name: "canary-relay"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx, repo) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return func(head int64) []byte {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := js.Stream(context.Background(), stream)
			if err == nil && int64(s.CachedInfo().State.Msgs) >= head {
				var b strings.Builder
				for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
					m, err := s.GetMsg(context.Background(), seq)
					if err != nil {
						t.Fatalf("read message %d of %s: %v", seq, stream, err)
					}
					fmt.Fprintf(&b, "%s %v %s\n", m.Subject, m.Header, m.Data)
				}
				return []byte(b.String())
			}
			if time.Now().After(deadline) {
				t.Fatalf("the relay did not publish %d records to %s in time (stream: %v)", head, stream, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
