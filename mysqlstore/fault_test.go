package mysqlstore_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/go-sql-driver/mysql"
)

// Fault tests: a writer process killed at random points, a database
// restarted under writes, and connections cut during COMMIT.

const (
	childDSNEnv  = "FLUX_MYSQLSTORE_CHILD_DSN"
	killBatches  = 1000
	batchStreams = 2
)

// batch returns the deterministic append number i: 3 to 5 events over two
// streams, tagged with the batch's correlation ID and idempotency key.
func batch(i int) flux.AppendRequest {
	key := fmt.Sprintf("batch-%d", i)
	mk := func(stream string, n int) flux.StreamAppend {
		evs := make([]flux.EventData, n)
		for j := range evs {
			evs[j] = ev("Appended", fmt.Sprintf(`{"batch":%d,"n":%d}`, i, j))
			evs[j].Metadata.CorrelationID = key
		}
		return flux.StreamAppend{StreamID: stream, AggregateType: "T", Expected: flux.Any, Events: evs}
	}
	return flux.AppendRequest{
		Streams: []flux.StreamAppend{
			mk(fmt.Sprintf("a-%d", i%7), 1+i%3),
			mk(fmt.Sprintf("b-%d", i%5), 2+i%2),
		},
		Idempotency: &flux.IdempotencyRecord{Key: key, Result: []byte(`{}`), CreatedAt: time.Now()},
	}
}

func batchSize(i int) int { return 1 + i%3 + 2 + i%2 }

// writerChild is the body of the child process: it resumes after the
// batches already committed and appends the rest, one at a time.
func writerChild(dsn string) {
	s, err := mysqlstore.Open(context.Background(), dsn, &mysqlstore.Options{SkipMigrate: true})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var done int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM idempotency_keys`).Scan(&done); err != nil {
		fmt.Println("resume:", err)
		os.Exit(3)
	}
	if done >= killBatches {
		os.Exit(0) // nothing left: exit before the parent kills
	}
	fmt.Println("ready")
	for i := done; i < killBatches; i++ {
		if _, err := s.Append(context.Background(), batch(i)); err != nil {
			fmt.Println("append:", err)
			os.Exit(3)
		}
	}
	os.Exit(0)
}

// A writer process killed (SIGKILL) at random points during 1,000
// multi-stream appends leaves every append whole or absent, every stream
// with contiguous versions and the log without holes; the store goes on.
func TestKilledWriterLeavesWholeAppends(t *testing.T) {
	if dsn := os.Getenv(childDSNEnv); dsn != "" {
		writerChild(dsn)
		return
	}
	t.Parallel()
	dsn := mysqlstore.NewTestDatabase(t)
	s, err := mysqlstore.Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	deadline := time.Now().Add(4 * time.Minute)
	for finished := false; !finished; {
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not finish in time (%d kills)", kills)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLeavesWholeAppends$", "-test.count=1")
		cmd.Env = append(os.Environ(), childDSNEnv+"="+dsn)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		var said []string
		ready := false
		for !ready && lines.Scan() {
			said = append(said, lines.Text())
			ready = lines.Text() == "ready"
		}
		if ready {
			// Kill at a random point of the appends that follow.
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
			cmd.Process.Kill()
		}
		for lines.Scan() {
			said = append(said, lines.Text())
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			finished = true
		case errors.As(err, &exit) && exit.ExitCode() == -1: // killed
			kills++
		default:
			t.Fatalf("writer process: %v: %s", err, strings.Join(said, "\n"))
		}
	}
	t.Logf("writer killed %d times during %d appends", kills, killBatches)
	if kills < 5 {
		t.Fatalf("only %d kills: the test did not exercise anything", kills)
	}

	db := s.DB()
	ctx := t.Context()
	// Every batch is whole (and, resumed by its idempotency key, present once).
	rows, err := db.QueryContext(ctx, `SELECT correlation_id, COUNT(*) FROM events GROUP BY correlation_id`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			t.Fatal(err)
		}
		counts[key] = n
	}
	rows.Close()
	total := 0
	for i := 0; i < killBatches; i++ {
		n := counts[fmt.Sprintf("batch-%d", i)]
		if n != batchSize(i) {
			t.Fatalf("batch %d has %d of its %d events", i, n, batchSize(i))
		}
		total += n
	}
	if len(counts) != killBatches {
		t.Fatalf("%d correlation IDs in the log, want %d", len(counts), killBatches)
	}
	// Stream versions are contiguous, positions dense.
	var bad int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT aggregate_id FROM events GROUP BY aggregate_id
		HAVING MIN(version) <> 1 OR MAX(version) <> COUNT(*)) AS gaps`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d streams have gaps in their versions", bad)
	}
	checkDense(t, s, total)
	// The store still works.
	if _, err := s.Append(ctx, batch(killBatches)); err != nil {
		t.Fatalf("append after the kills: %v", err)
	}
	checkDense(t, s, total+batchSize(killBatches))
}

// checkDense checks that the log holds positions 1..n, and Head says n.
func checkDense(t *testing.T, s *mysqlstore.Store, n int) {
	t.Helper()
	var count, lo, hi int64
	if err := s.DB().QueryRow(`SELECT COUNT(*), COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM events`).Scan(&count, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if count != int64(n) || lo != 1 || hi != count || head != count {
		t.Fatalf("log holds %d events at positions %d..%d, head %d; want %d dense positions", count, lo, hi, head, n)
	}
}

// server is a private, throwaway MariaDB/MySQL server for the restart
// test: the shared server must not be restarted under other suites.
type server struct {
	t       *testing.T
	bin     string
	dir     string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func startPrivateServer(t *testing.T) *server {
	t.Helper()
	mysqlstore.ServerDSN(t) // gated like every database test
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			if p := filepath.Join("/usr/sbin", n); fileExists(p) {
				return p
			}
		}
		return ""
	}
	install, bin := find("mariadb-install-db", "mysql_install_db"), find("mariadbd", "mysqld")
	if install == "" || bin == "" {
		msg := "mariadb-install-db and mariadbd (or mysql_install_db and mysqld) are not installed; they are needed to run a private server to restart"
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "fluxdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", install, err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := &server{t: t, bin: bin, dir: dir, port: port, logPath: filepath.Join(dir, "error.log")}
	srv.start()
	t.Cleanup(srv.kill)
	return srv
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (srv *server) start() {
	t := srv.t
	t.Helper()
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(srv.dir, "data"),
		"--port=" + strconv.Itoa(srv.port), "--bind-address=127.0.0.1", "--socket=" + filepath.Join(srv.dir, "sock"),
		"--pid-file=" + filepath.Join(srv.dir, "pid"), "--log-error=" + srv.logPath, "--skip-grant-tables",
		"--innodb-buffer-pool-size=32M", "--skip-log-bin"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	srv.cmd = exec.Command(srv.bin, args...)
	if err := srv.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(srv.cmd, srv.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("mysql", srv.dsn(""))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		select {
		case <-srv.exited:
			log, _ := os.ReadFile(srv.logPath)
			t.Fatalf("the private server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the private server did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL, as a crash or a forced restart would.
func (srv *server) kill() {
	if srv.cmd != nil && srv.cmd.Process != nil {
		srv.cmd.Process.Kill()
		<-srv.exited
	}
}

func (srv *server) dsn(db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", fmt.Sprintf("127.0.0.1:%d", srv.port), db
	cfg.Timeout = 2 * time.Second
	cfg.Logger = &mysql.NopLogger{}
	return cfg.FormatDSN()
}

// The database is killed and restarted while four writers append: writes
// in flight fail with ErrStoreUnavailable saying the connection was lost
// (or, while the server is down, that it cannot connect); acknowledged
// appends survive, failed ones are whole or absent; and the same Store
// works again once the server is back, without repair.
func TestDatabaseRestartUnderWrites(t *testing.T) {
	t.Parallel()
	srv := startPrivateServer(t)
	admin, err := sql.Open("mysql", srv.dsn(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE flux CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	s, err := mysqlstore.Open(t.Context(), srv.dsn("flux"), &mysqlstore.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const writers = 4
	var (
		mu        sync.Mutex
		outcomes  []outcome
		succeeded atomic.Int64
		phase     atomic.Int32 // 0: before the kill, 1: down or restarting, 2: back up
		recovered [writers]atomic.Bool
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		// Even writers expect exact versions, as a repository does (and
		// take the one-round-trip path of Open's pool); odd ones expect Any.
		exact := w%2 == 0
		go func() {
			defer wg.Done()
			var version int64
			known := true
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				stream := fmt.Sprintf("w%d", w)
				if exact && !known { // after a failure the version must be read again
					recs, err := readAllOf(s, stream)
					if err != nil {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					version, known = int64(len(recs)), true
				}
				expected := flux.Any
				if exact {
					expected = flux.ExpectedVersion(version)
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				req := flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: stream, AggregateType: "T", Expected: expected,
					Events: []flux.EventData{ev("E", `{}`), ev("E", `{}`), ev("E", `{}`)}}}}
				for j := range req.Streams[0].Events {
					req.Streams[0].Events[j].Metadata.CorrelationID = key
				}
				p := phase.Load()
				res, err := s.Append(context.Background(), req)
				mu.Lock()
				outcomes = append(outcomes, outcome{key, err})
				mu.Unlock()
				if err == nil {
					version = res.Versions[0]
					succeeded.Add(1)
					if p == 2 {
						recovered[w].Store(true)
					}
				} else {
					known = false
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	for succeeded.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	phase.Store(1)
	srv.kill()
	time.Sleep(300 * time.Millisecond) // writers meet the dead server
	srv.start()
	phase.Store(2)
	deadline := time.Now().Add(30 * time.Second)
	for w := range recovered {
		for !recovered[w].Load() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("writer %d did not succeed within 30s of the restart; last errors: %v", w, lastErrors(outcomes, 3))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()

	// Every failure is ErrStoreUnavailable and says why.
	lost, down, unknown := 0, 0, map[string]bool{}
	for _, o := range outcomes {
		if o.err == nil {
			continue
		}
		msg := o.err.Error()
		switch {
		case !errors.Is(o.err, flux.ErrStoreUnavailable):
			t.Fatalf("append %s: err = %v, want ErrStoreUnavailable", o.key, o.err)
		case strings.Contains(msg, "connection to the database was lost") && strings.Contains(msg, "rolled back"):
			lost++
		case strings.Contains(msg, "connection to the database was lost") && strings.Contains(msg, "could not be asked"):
			lost++
			unknown[o.key] = true
		case strings.Contains(msg, "cannot connect"):
			down++
		default:
			t.Fatalf("append %s: err = %q does not say the connection was lost", o.key, msg)
		}
	}
	t.Logf("%d appends: %d succeeded, %d lost their connection (%d with an unknown outcome), %d found the server down",
		len(outcomes), succeeded.Load(), lost, len(unknown), down)
	if lost == 0 {
		t.Fatal("no append lost its connection: the kill hit no write in flight")
	}

	// Acknowledged appends survived; failed ones left nothing (or, when
	// the outcome was unknown, all or nothing); versions are contiguous,
	// positions dense.
	counts := map[string]int{}
	rows, err := s.DB().Query(`SELECT correlation_id, COUNT(*) FROM events GROUP BY correlation_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		rows.Scan(&k, &n)
		counts[k] = n
	}
	rows.Close()
	total := 0
	for _, o := range outcomes {
		n := counts[o.key]
		total += n
		switch {
		case o.err == nil && n != 3:
			t.Fatalf("acknowledged append %s has %d of 3 events after the restart", o.key, n)
		case o.err != nil && !unknown[o.key] && n != 0:
			t.Fatalf("failed append %s (%v) wrote %d events", o.key, o.err, n)
		case unknown[o.key] && n != 0 && n != 3:
			t.Fatalf("append %s of unknown outcome has %d of 3 events", o.key, n)
		}
	}
	for w := 0; w < writers; w++ {
		recs := readStream(t, s, fmt.Sprintf("w%d", w))
		for i, r := range recs {
			if r.StreamVersion != int64(i+1) {
				t.Fatalf("stream w%d: record %d has version %d", w, i, r.StreamVersion)
			}
		}
	}
	checkDense(t, s, total)
}

// readAllOf reads a stream, returning the first error instead of failing.
func readAllOf(s flux.EventStore, stream string) ([]flux.Record, error) {
	var out []flux.Record
	for r, err := range s.ReadStream(context.Background(), stream, flux.ReadStreamOptions{}) {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

type outcome struct {
	key string // the append's correlation ID
	err error
}

// lastErrors returns the last n errors of outcomes.
func lastErrors(outcomes []outcome, n int) []error {
	var out []error
	for i := len(outcomes) - 1; i >= 0 && len(out) < n; i-- {
		if outcomes[i].err != nil {
			out = append(out, outcomes[i].err)
		}
	}
	return out
}

// cutProxy forwards TCP connections to the test server and, when armed,
// cuts the connection that sends the next COMMIT right after forwarding
// it, before the server's answer comes back: the client cannot know
// whether the transaction committed. With shutdown set, the cut also
// closes every other connection and stops accepting new ones, so the
// database cannot be asked either.
type cutProxy struct {
	ln       net.Listener
	target   string
	armed    atomic.Bool
	shutdown bool
	cut      chan struct{}
	cutOnce  sync.Once
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string, shutdown bool) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, shutdown: shutdown, cut: make(chan struct{}), conns: map[net.Conn]bool{}}
	t.Cleanup(p.closeAll)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *cutProxy) closeAll() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

var commitPacket = []byte("\x07\x00\x00\x00\x03COMMIT")

func (p *cutProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(client) || !p.track(server) {
		return
	}
	var frozen atomic.Bool // drop the server's answers from now on
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !frozen.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			cutting := bytes.Contains(buf[:n], commitPacket) && p.armed.CompareAndSwap(true, false)
			if cutting {
				frozen.Store(true)
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
			if cutting {
				time.Sleep(200 * time.Millisecond) // the server commits
				if p.shutdown {
					p.closeAll()
				}
				p.cutOnce.Do(func() { close(p.cut) })
				return // closes both sides; the answer is never forwarded
			}
		}
		if err != nil {
			return
		}
	}
}

// When the connection breaks after COMMIT was sent, the store asks the
// database whether the append was written: a committed append is
// reported as a success, and when the database cannot be asked the error
// says the outcome is unknown and which event to look for.
func TestConnectionCutDuringCommit(t *testing.T) {
	t.Parallel()
	cfg, err := mysql.ParseDSN(mysqlstore.NewTestDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	target := cfg.Addr
	p := newCutProxy(t, target, false)
	cfg.Addr = p.ln.Addr().String()
	var logs syncBuffer
	s, err := mysqlstore.Open(t.Context(), cfg.FormatDSN(), &mysqlstore.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	p.armed.Store(true)
	res, err := appendOne(t.Context(), s, "committed", flux.NoStream, ev("E", `{}`), ev("E", `{}`))
	<-p.cut
	if err != nil {
		t.Fatalf("append whose COMMIT reached the server: err = %v, want success", err)
	}
	if recs := readStream(t, s, "committed"); len(recs) != 2 || recs[1].Position != res.Positions[1] {
		t.Fatalf("stream holds %+v, want the 2 events at %v", recs, res.Positions)
	}
	if !strings.Contains(logs.String(), "the append was committed") {
		t.Fatalf("the success did not come from the outcome check; log:\n%s", logs.String())
	}

	p2 := newCutProxy(t, target, true)
	cfg.Addr = p2.ln.Addr().String()
	s2, err := mysqlstore.Open(t.Context(), cfg.FormatDSN(), &mysqlstore.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e := ev("E", `{}`)
	p2.armed.Store(true)
	_, err = appendOne(t.Context(), s2, "unknown", flux.NoStream, e)
	<-p2.cut
	if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "could not be asked") || !strings.Contains(err.Error(), e.EventID) {
		t.Fatalf("err = %v, want ErrStoreUnavailable saying the outcome is unknown and naming event %s", err, e.EventID)
	}
	// It was in fact committed: the message was right not to say otherwise.
	if recs := readStream(t, s, "unknown"); len(recs) != 1 {
		t.Fatalf("stream holds %d events, want 1", len(recs))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
