package sqlitestore_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

type Counted struct {
	N int `json:"n"`
}

type CountedStream struct{ flux.Root }

func (*CountedStream) Apply(any) {}

func crashRepo(t testing.TB, s *sqlitestore.Store) *flux.Repository {
	reg, err := flux.NewRegistry(flux.AggregateType("Counted", func() *CountedStream { return new(CountedStream) },
		flux.EventType[Counted]("Counted", 1)))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// countingProjection counts events per stream into table, exactly once,
// and records every applied event ID (a second application of one event
// would violate the primary key and fail the batch).
func countingProjection(s *sqlitestore.Store, name, table string) *projection.Tx[*sql.Tx] {
	return projection.NewTx(name, s, func(ctx context.Context, tx *sql.Tx, e flux.Envelope) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (stream, n) VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1`, e.StreamID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO `+table+`_applied (event_id) VALUES (?)`, e.EventID)
		return err
	})
}

func createCountTables(t testing.TB, path, table string) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + table + ` (stream TEXT PRIMARY KEY, n INTEGER NOT NULL);
		CREATE TABLE IF NOT EXISTS ` + table + `_applied (event_id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
}

// runProjector projects until caught up with the head (or until killed).
func runProjector(t testing.TB, path string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: crashRepo(t, s), BatchSize: 20, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(countingProjection(s, "counts", "counts")); err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	fmt.Println("projecting") // tells a parent test it may kill us now
	for {
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st[0].LastError != "" {
			t.Fatalf("projector: %s", st[0].LastError)
		}
		if st[0].Position >= head {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestProjectorSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv("FLUX_CRASH_PROJECTOR"); path != "" {
		runProjector(t, path)
		return
	}
	if testing.Short() {
		t.Skip("kills 100 child processes")
	}
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	total, kills := 50_000, 100
	if raceEnabled && os.Getenv("FLUX_TEST_FULL") == "" {
		total, kills = 5_000, 30
	}
	const streams, perAppend = 100, 500
	versions := make([]int64, streams)
	for i := 0; i < total/perAppend; i++ {
		st := i % streams
		evs := make([]flux.EventData, perAppend)
		for j := range evs {
			evs[j] = flux.EventData{EventID: ids.New(), EventName: "Counted", EventVersion: 1, Payload: []byte(fmt.Sprintf(`{"n":%d}`, j)), OccurredAt: time.Now()}
		}
		if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: fmt.Sprintf("s%03d", st), AggregateType: "Counted",
			Expected: flux.ExpectedVersion(versions[st]), Events: evs}}}); err != nil {
			t.Fatal(err)
		}
		versions[st] += perAppend
	}
	createCountTables(t, path, "counts")
	createCountTables(t, path, "rebuilt")

	// Kill points: random checkpoint targets spread over the whole run.
	rng := rand.New(rand.NewPCG(1, 2))
	targets := make([]int64, kills)
	for i := range targets {
		targets[i] = 1 + rng.Int64N(int64(total-1))
	}
	slices.Sort(targets)
	var progress []int64
	for i := 0; i < kills; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestProjectorSurvivesSIGKILL$")
		cmd.Env = append(os.Environ(), "FLUX_CRASH_PROJECTOR="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "projecting" {
					close(ready)
					break
				}
			}
			io.Copy(io.Discard, out)
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatal("the projector did not start")
		}
		// Kill as soon as the projector passes the target: wherever it is
		// then, mid-transaction or between two.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			cp, err := s.LoadCheckpoint(ctx, "counts")
			if err != nil {
				t.Fatal(err)
			}
			if cp.Position >= targets[i] {
				break
			}
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		}
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
		cp, err := s.LoadCheckpoint(ctx, "counts")
		if err != nil {
			t.Fatal(err)
		}
		progress = append(progress, cp.Position)
		// After every kill the read model matches its checkpoint exactly.
		var counted int64
		if err := s.DB().QueryRow(`SELECT COALESCE(SUM(n), 0) FROM counts`).Scan(&counted); err != nil {
			t.Fatal(err)
		}
		if counted != cp.Position {
			t.Fatalf("after kill %d: read model counted %d events, checkpoint at %d", i, counted, cp.Position)
		}
	}
	moved := 0
	for i := 1; i < len(progress); i++ {
		if progress[i] > progress[i-1] {
			moved++
		}
	}
	t.Logf("checkpoint after each kill (first 10): %v; advanced in %d of %d runs", progress[:10], moved, kills)
	if moved < kills/2 {
		t.Fatalf("the projector advanced in only %d of %d runs; the kills did not land during projection", moved, kills)
	}
	runProjector(t, path) // finish

	// Compare with a from-scratch rebuild into another table.
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: crashRepo(t, s), BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(countingProjection(s, "rebuilt", "rebuilt")); err != nil {
		t.Fatal(err)
	}
	if err := r.RebuildSwap(ctx, "rebuilt", projection.ReplayOptions{}); err == nil {
		t.Fatal("RebuildSwap of a projection without Swap succeeded")
	}
	runTo(t, r, s)
	var diff, rows, applied int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM counts c FULL OUTER JOIN rebuilt r ON r.stream = c.stream WHERE c.n IS NOT r.n`).Scan(&diff); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRow(`SELECT COUNT(*), (SELECT COUNT(*) FROM counts_applied) FROM counts`).Scan(&rows, &applied); err != nil {
		t.Fatal(err)
	}
	var sum int
	_ = s.DB().QueryRow(`SELECT SUM(n) FROM counts`).Scan(&sum)
	wantStreams := min(streams, total/perAppend)
	if diff != 0 || rows != wantStreams || applied != total || sum != total {
		t.Fatalf("after 100 kills: %d streams differ from the rebuild, %d streams, %d events applied, sum %d; want 0, %d, %d, %d",
			diff, rows, applied, sum, wantStreams, total, total)
	}
}

func runTo(t *testing.T, r *projection.Runner, s *sqlitestore.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	head, _ := s.Head(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _ := r.Status(ctx)
		if st[0].Position >= head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild stuck at %+v", st[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}
