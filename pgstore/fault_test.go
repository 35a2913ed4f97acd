package pgstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Fault tests: a writer process killed mid-append, and the database
// restarted under a writing store.

// killChildEnv names the schema a TestKilledWriterChild process writes to.
const killChildEnv = "FLUX_PGSTORE_KILL_CHILD_SCHEMA"

const killBatches = 1000

// writerReady is the line a writer prints when it starts appending.
const writerReady = "WRITER-READY"

// batchEvents is how many events batch n appends: 3-5 to stream a-(n%7)
// and 2 to stream b-(n%5).
func batchEvents(n int) (a, b int) { return 3 + n%3, 2 }

type batchPayload struct {
	Batch int `json:"batch"`
	I     int `json:"i"`
}

// TestKilledWriterChild is the writer that TestKilledWriterLeavesWholeAppends
// starts and kills: it appends batches 0..999 (each to two streams, with
// exact expected versions and an idempotency key "batch-n"), skipping those
// a previous incarnation committed.
func TestKilledWriterChild(t *testing.T) {
	schema := os.Getenv(killChildEnv)
	if schema == "" {
		t.Skip("run by TestKilledWriterLeavesWholeAppends")
	}
	ctx := context.Background()
	s, err := pgstore.Open(ctx, testDSN(t), &pgstore.Options{Schema: schema, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	versions := map[string]int64{}
	reload := func() {
		clear(versions)
		for si, err := range s.ListStreams(ctx, flux.ListStreamsOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			versions[si.StreamID] = si.Version
		}
	}
	reload()
	// Batches commit in order, so the committed ones are a prefix: find
	// its end by binary search on the idempotency keys.
	first := sort.Search(killBatches, func(n int) bool {
		_, ok, err := s.LookupIdempotency(ctx, fmt.Sprintf("batch-%d", n))
		if err != nil {
			t.Fatal(err)
		}
		return !ok
	})
	fmt.Println(writerReady) // the parent's cue that kills may now hit appends
	mk := func(n int, id string, count, from int) flux.StreamAppend {
		evs := make([]flux.EventData, count)
		for i := range evs {
			p, _ := json.Marshal(batchPayload{Batch: n, I: from + i})
			evs[i] = flux.EventData{EventID: ids.New(), EventName: "Written", EventVersion: 1, Payload: p, OccurredAt: time.Now()}
		}
		return flux.StreamAppend{StreamID: id, AggregateType: "Batch", Expected: flux.ExpectedVersion(versions[id]), Events: evs}
	}
	for n := first; n < killBatches; n++ {
		key := fmt.Sprintf("batch-%d", n)
		for {
			na, nb := batchEvents(n)
			a, b := fmt.Sprintf("a-%d", n%7), fmt.Sprintf("b-%d", n%5)
			res, err := s.Append(ctx, flux.AppendRequest{
				Streams:     []flux.StreamAppend{mk(n, a, na, 0), mk(n, b, nb, na)},
				Idempotency: &flux.IdempotencyRecord{Key: key, Result: []byte(`"ok"`), CreatedAt: time.Now()},
			})
			switch {
			case err == nil:
				versions[a], versions[b] = res.Versions[0], res.Versions[1]
			case errors.Is(err, flux.ErrDuplicateCommand):
				// Committed by the previous incarnation, maybe as it died.
				reload()
			case errors.Is(err, flux.ErrConcurrencyConflict):
				// The previous incarnation's last append committed after
				// this one read the versions.
				reload()
				continue
			default:
				t.Fatalf("batch %d: %v", n, err)
			}
			break
		}
	}
}

// TestKilledWriterLeavesWholeAppends kills a writer process (SIGKILL, at
// random moments) again and again while it makes 1,000 two-stream appends.
// After every kill each append is in the store completely or not at all,
// stream versions and log positions have no holes, and a final writer
// finishes the job on the same schema.
func TestKilledWriterLeavesWholeAppends(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("this is the child")
	}
	t.Parallel()
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	s := openOn(t, dsn, &pgstore.Options{Schema: schema})
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))

	// run starts a writer and, when killAfter > 0, kills it that long after
	// it starts appending (if it has not finished by then).
	run := func(killAfter time.Duration) (killed bool, out []byte) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKilledWriterChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+schema)
		var buf syncBuffer
		ready := make(chan struct{})
		buf.onLine(writerReady, func() { close(ready) })
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timer <-chan time.Time
		if killAfter > 0 {
			select {
			case <-ready:
				timer = time.After(killAfter)
			case err := <-done:
				done <- err
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer failed: %v\n%s", err, buf.Bytes())
			}
			return false, buf.Bytes()
		case <-timer:
			cmd.Process.Kill() // SIGKILL: no deferred Close, no rollback from the client
			<-done
			return true, buf.Bytes()
		case <-time.After(5 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("writer did not finish in 5 minutes:\n%s", buf.Bytes())
		}
		return false, nil
	}

	// Kill writers until one finishes, checking after every kill.
	kills, midway := 0, 0
	var progress []int
	for round := 0; round < 100; round++ {
		killed, _ := run(time.Duration(1+rng.IntN(120)) * time.Millisecond)
		if !killed {
			break
		}
		kills++
		written := checkWholeAppends(t, s, schema, false)
		if len(progress) == 0 || written > progress[len(progress)-1] {
			midway++ // this writer was appending when it died
		}
		progress = append(progress, written)
		if written == killBatches {
			break
		}
	}
	if _, out := run(0); !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("final writer:\n%s", out)
	}
	written := checkWholeAppends(t, s, schema, true)
	t.Logf("%d kills (%d while appending); appends stored after each kill: %v; finally %d, every one whole", kills, midway, progress, written)
	if midway < 3 {
		t.Fatalf("only %d writers died while appending; the test proved too little", midway)
	}

	// The store still works.
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("after", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatalf("append after the kills: %v", err)
	}
	if recs := readStream(t, s, "after"); len(recs) != 1 {
		t.Fatalf("read after the kills: %d records", len(recs))
	}
}

// syncBuffer collects a child's output and calls a function once when a
// line with a marker arrives.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	fn     func()
}

func (b *syncBuffer) onLine(marker string, fn func()) { b.marker, b.fn = marker, fn }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.fn != nil && bytes.Contains(b.buf.Bytes(), []byte(b.marker)) {
		b.fn()
		b.fn = nil
	}
	return len(p), nil
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// checkWholeAppends checks that every batch is in the store completely or
// not at all (and, when complete is set, completely), that stream versions
// and positions are dense, and that idempotency keys match the batches. It
// returns the number of batches written.
func checkWholeAppends(t *testing.T, s *pgstore.Store, schema string, complete bool) int {
	t.Helper()
	ctx := t.Context()
	tab := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	// One snapshot for all the checks: a dying writer's commit may land
	// between two statements otherwise.
	tx, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	counts := map[int]int{}
	rows, err := tx.Query(ctx, `SELECT (payload->>'batch')::int, count(*) FROM `+tab("events")+` WHERE aggregate_type = 'Batch' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var b, n int
		if err := rows.Scan(&b, &n); err != nil {
			t.Fatal(err)
		}
		counts[b] = n
	}
	rows.Close()
	keys := map[int]bool{}
	rows, err = tx.Query(ctx, `SELECT idempotency_key FROM `+tab("idempotency_keys"))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		n, _ := strconv.Atoi(strings.TrimPrefix(k, "batch-"))
		keys[n] = true
	}
	rows.Close()
	for n := 0; n < killBatches; n++ {
		na, nb := batchEvents(n)
		switch got := counts[n]; {
		case got == 0 && !complete && !keys[n]:
		case got == na+nb && keys[n]:
		default:
			t.Fatalf("batch %d: %d of its %d events stored, idempotency key stored: %v — an append was cut in half", n, got, na+nb, keys[n])
		}
	}
	// Versions: 1..n in every stream; positions: 1..N over the log.
	var streams, holes int
	err = tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE n <> top) FROM
		(SELECT aggregate_id, count(*) AS n, max(version) AS top FROM `+tab("events")+` GROUP BY aggregate_id) AS s`).Scan(&streams, &holes)
	if err != nil || holes != 0 {
		t.Fatalf("streams with version holes: %d of %d (%v)", holes, streams, err)
	}
	var total, top, head int64
	err = tx.QueryRow(ctx, `SELECT count(*), COALESCE(max(id), 0), (SELECT position FROM `+tab("log_head")+`) FROM `+tab("events")).Scan(&total, &top, &head)
	if err != nil || total != top || head != top {
		t.Fatalf("log: %d events, highest position %d, head %d (%v); positions must be dense", total, top, head, err)
	}
	written := 0
	for range counts {
		written++
	}
	return written
}

// TestDatabaseRestart restarts a private PostgreSQL server (never the shared
// one) while a store writes to it: writes in flight fail with errors
// matching flux.ErrStoreUnavailable that say the connection was lost and
// what became of the append, no append is cut in half, and afterwards the
// same store works again, Wake included.
func TestDatabaseRestart(t *testing.T) {
	t.Parallel()
	testDSN(t) // gated like every PostgreSQL test
	srv := startPrivateServer(t)
	ctx := t.Context()
	s := openOn(t, srv.dsn, &pgstore.Options{Schema: "restart"})
	other := openOn(t, srv.dsn, &pgstore.Options{Schema: "restart", SkipMigrate: true})
	woken, err := s.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}

	type attempt struct {
		batch  string
		err    error
		events int
	}
	var (
		mu        sync.Mutex
		attempts  []attempt
		restarted atomic.Bool
		stop      = make(chan struct{})
		afterOK   atomic.Int64 // successes after the restart
		wg        sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%d", w)
			var version int64
			stale := false
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if stale { // after a failure, learn the stream's version again
					recs := 0
					var last int64
					for r, err := range s.ReadStream(ctx, id, flux.ReadStreamOptions{}) {
						if err != nil {
							recs = -1
							break
						}
						recs++
						last = r.StreamVersion
					}
					if recs < 0 {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					version, stale = last, false
				}
				batch := fmt.Sprintf("%s-%d", id, i)
				evs := []flux.EventData{event("E", fmt.Sprintf(`{"batch":%q}`, batch)), event("E", fmt.Sprintf(`{"batch":%q}`, batch))}
				actx, cancel := context.WithTimeout(ctx, 20*time.Second)
				res, err := s.Append(actx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf(id, flux.ExpectedVersion(version), evs...)}})
				cancel()
				mu.Lock()
				attempts = append(attempts, attempt{batch, err, len(evs)})
				mu.Unlock()
				if err != nil {
					stale = true
					time.Sleep(10 * time.Millisecond)
					continue
				}
				version = res.Versions[0]
				if restarted.Load() {
					afterOK.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	srv.pgCtl(t, "restart", "-m", "fast")
	restarted.Store(true)
	deadline := time.Now().Add(60 * time.Second)
	for afterOK.Load() < 40 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if afterOK.Load() < 40 {
		t.Fatalf("only %d appends succeeded in the minute after the restart: the store did not recover", afterOK.Load())
	}

	stored := map[string]int{}
	for r, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Batch string }
		json.Unmarshal(r.Payload, &p)
		stored[p.Batch]++
	}
	var failed, lost, unknown int
	var samples []string
	for _, a := range attempts {
		got := stored[a.batch]
		if a.err == nil {
			if got != a.events {
				t.Fatalf("append %s succeeded but %d of its %d events are stored", a.batch, got, a.events)
			}
			continue
		}
		failed++
		msg := a.err.Error()
		if !errors.Is(a.err, flux.ErrStoreUnavailable) {
			t.Fatalf("append %s failed with %v; want an error matching flux.ErrStoreUnavailable", a.batch, a.err)
		}
		if strings.Contains(msg, "lost the connection") {
			lost++
		}
		switch {
		case strings.Contains(msg, "nothing was committed"):
			if got != 0 {
				t.Fatalf("append %s failed saying nothing was committed, but %d events are stored: %v", a.batch, got, a.err)
			}
		case strings.Contains(msg, "outcome is unknown"):
			unknown++
			if got != 0 && got != a.events {
				t.Fatalf("append %s with unknown outcome is cut in half: %d of %d events", a.batch, got, a.events)
			}
		default:
			t.Fatalf("append %s failed without saying what became of it: %v", a.batch, a.err)
		}
		if len(samples) < 3 {
			samples = append(samples, msg)
		}
	}
	t.Logf("%d appends, %d failed (%d said the connection was lost, %d had an unknown outcome); %d succeeded after the restart; e.g.\n%s",
		len(attempts), failed, lost, unknown, afterOK.Load(), strings.Join(samples, "\n"))
	if failed == 0 || lost == 0 {
		t.Fatalf("no append failed with a lost connection during the restart (%d failed); the test proved nothing", failed)
	}

	// Wake came back too: the listener reconnected, so an append by
	// another store (another process, as far as NOTIFY goes) wakes s.
	for len(woken) > 0 {
		<-woken
	}
	ok := false
	for try := 0; try < 50 && !ok; try++ {
		if _, err := other.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf(fmt.Sprintf("wake-%d", try), flux.NoStream, event("E", `{}`))}}); err != nil {
			t.Fatalf("append through the second store: %v", err)
		}
		select {
		case <-woken:
			ok = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !ok {
		t.Fatal("Wake never fired again after the restart")
	}
}

// privateServer is a throwaway PostgreSQL cluster in a temporary directory.
type privateServer struct {
	bin, dir, data string
	port           int
	dsn            string
	asPostgres     bool // running as root: run the server as the postgres user
}

// startPrivateServer initialises and starts a cluster of its own on a free
// port, and stops and removes it when t ends. It skips (or, with
// FLUX_TEST_REQUIRE, fails) when the PostgreSQL server binaries are not
// installed; FLUX_TEST_POSTGRES_BIN names their directory when they are
// not under /usr/lib/postgresql/*/bin.
func startPrivateServer(t *testing.T) *privateServer {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	bin := os.Getenv("FLUX_TEST_POSTGRES_BIN")
	if bin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
		if len(dirs) > 0 {
			bin = dirs[0]
		}
	}
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			unavailable("the database restart test needs the PostgreSQL server binaries (initdb, pg_ctl) to start a private server; none in %q: set FLUX_TEST_POSTGRES_BIN", bin)
		}
	}
	srv := &privateServer{bin: bin, asPostgres: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "pgstore-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv.dir, srv.data = dir, filepath.Join(dir, "data")
	if srv.asPostgres {
		// initdb refuses to run as root: the cluster belongs to postgres.
		if _, err := exec.LookPath("runuser"); err != nil {
			unavailable("running as root, the restart test needs runuser to start PostgreSQL as the postgres user: %v", err)
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable("running as root, the restart test needs a postgres user to own its private cluster: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv.run(t, "initdb", "-D", srv.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	srv.pgCtl(t, "start", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40", srv.port, dir))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := srv.command(ctx, "pg_ctl", "-D", srv.data, "-m", "immediate", "-w", "stop")
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stop the private server: %v\n%s", err, out)
		}
	})
	srv.dsn = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", srv.port)
	return srv
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func (srv *privateServer) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	path := filepath.Join(srv.bin, tool)
	if srv.asPostgres {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

// run runs a server tool to completion. Its output goes to a file, not a
// pipe: a server it starts inherits the output descriptors and would keep a
// pipe open for as long as it runs.
func (srv *privateServer) run(t *testing.T, tool string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := os.CreateTemp(srv.dir, tool+"-*.out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := srv.command(ctx, tool, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		output, _ := os.ReadFile(out.Name())
		log, _ := os.ReadFile(filepath.Join(srv.dir, "server.log"))
		t.Fatalf("%s %s: %v\n%s\nserver log:\n%s", tool, strings.Join(args, " "), err, output, log)
	}
}

// pgCtl runs pg_ctl action on the cluster and waits for it to complete.
func (srv *privateServer) pgCtl(t *testing.T, action string, args ...string) {
	t.Helper()
	srv.run(t, "pg_ctl", append([]string{"-D", srv.data, "-l", filepath.Join(srv.dir, "server.log"), "-w", "-t", "90", action}, args...)...)
}

// TestCommitLosesItsConnection cuts the connection of an append right
// after its COMMIT leaves the client — once after the server got it, once
// before — through a proxy between the store and the test server. The
// store must find out what happened instead of reporting an unknown
// outcome: success when the server committed, "nothing was committed" when
// it rolled back.
func TestCommitLosesItsConnection(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	trap := startCommitTrap(t, fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(trap.port)
	cfg.ConnConfig.TLSConfig, cfg.ConnConfig.Fallbacks = nil, nil // the trap reads the protocol
	ctx := t.Context()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgstore.New(ctx, pool, &pgstore.Options{Schema: freshSchema(t, dsn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	cases := []struct {
		name      string
		forward   bool // the server gets the COMMIT before the cut
		committed bool
	}{
		{"the server committed", true, true},
		{"the server never got the COMMIT", false, false},
	}
	for i, c := range cases {
		id := fmt.Sprintf("cut-%d", i)
		trap.arm(c.forward)
		_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf(id, flux.NoStream, event("E", `{}`), event("E", `{}`))}})
		if !trap.fired() {
			t.Fatalf("%s: the trap did not fire", c.name)
		}
		stored := len(readStream(t, s, id))
		switch {
		case c.committed && (err != nil || stored != 2):
			t.Fatalf("%s: err = %v, %d events stored; want success and 2 events", c.name, err, stored)
		case !c.committed && (!errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "nothing was committed") || stored != 0):
			t.Fatalf("%s: err = %v, %d events stored; want flux.ErrStoreUnavailable saying nothing was committed, and none stored", c.name, err, stored)
		}
		t.Logf("%s: err = %v", c.name, err)
	}
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("after", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatalf("append after the cuts: %v", err)
	}
}

// commitTrap is a TCP proxy that, when armed, cuts the first connection
// that sends a simple-protocol COMMIT: after forwarding it to the server,
// or instead of forwarding it. Either way the client never gets the answer.
type commitTrap struct {
	port    int
	mode    atomic.Int32 // 0 off, 1 forward then cut, 2 drop then cut
	tripped atomic.Bool
}

func startCommitTrap(t *testing.T, target string) *commitTrap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	trap := &commitTrap{port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			go func() { io.Copy(client, server); client.Close() }()
			go trap.relay(client, server)
		}
	}()
	return trap
}

func (trap *commitTrap) arm(forward bool) {
	trap.tripped.Store(false)
	if forward {
		trap.mode.Store(1)
	} else {
		trap.mode.Store(2)
	}
}

func (trap *commitTrap) fired() bool { return trap.tripped.Load() }

// relay copies client messages to the server, watching for COMMIT.
func (trap *commitTrap) relay(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	// Untyped start-up messages (SSL and GSS requests, then the startup
	// message itself): an int32 length, then the rest.
	for {
		var head [8]byte
		if _, err := io.ReadFull(client, head[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(head[:4]))
		if n < 8 {
			return
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if _, err := server.Write(append(head[:], body...)); err != nil {
			return
		}
		code := binary.BigEndian.Uint32(head[4:])
		if code != 80877103 && code != 80877104 { // not an SSL or GSS request
			break
		}
	}
	for {
		var head [5]byte
		if _, err := io.ReadFull(client, head[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(head[1:]))
		if n < 4 {
			return
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		msg := append(head[:], body...)
		if head[0] == 'Q' && strings.EqualFold(strings.TrimRight(string(body), "\x00; "), "COMMIT") {
			switch mode := trap.mode.Load(); {
			case mode == 1 && trap.mode.CompareAndSwap(1, 0):
				server.Write(msg) // the server commits...
				trap.tripped.Store(true)
				return // ...and the client's connection is cut before the answer
			case mode == 2 && trap.mode.CompareAndSwap(2, 0):
				trap.tripped.Store(true)
				return // the COMMIT never reaches the server
			}
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}
