package fluxcli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/projection"
)

// The tests of 'flux projections rebuild --swap' run on SQLite, and on
// PostgreSQL and MySQL/MariaDB when FLUX_TEST_POSTGRES_DSN and
// FLUX_TEST_MYSQL_DSN are set (see servers_test.go).

// swapBackend makes stores the demo filled, one per test.
type swapBackend struct {
	name  string
	store func(t *testing.T) string // the DSN of a new store
}

func swapBackends(t *testing.T) []swapBackend {
	backends := []swapBackend{{"sqlite", fixture}}
	for _, srv := range testServers(t) {
		backends = append(backends, swapBackend{srv.name, func(t *testing.T) string { return serverDemo(t, srv) }})
	}
	return backends
}

// serverDemo fills a fresh store on srv with the demo and returns its DSN.
// Unlike demoStore it does not check the demo's output, which is not what
// these tests are about.
func serverDemo(t *testing.T, srv server) string {
	t.Helper()
	dsn := srv.fresh(t)
	m, _, errOut := testMain()
	if code := m.Run(t.Context(), []string{"demo", "--dsn", dsn}); code != 0 {
		t.Fatalf("demo on %s: exit %d: %s", srv.name, code, errOut)
	}
	return dsn
}

// swapStore is a store under test, opened beside the commands the test
// runs: it reads the live read-model table as any reader would.
type swapStore struct {
	dsn  string
	b    *Backend
	live *sqlBalances
}

// openSwapStore fills a new store on bk with the demo, rebuilds the read
// model in place, then appends enough envelope events for a rebuild to
// take several batches and plants a row no rebuild makes: the live read
// model and its checkpoint differ from those of any rebuild.
func openSwapStore(t *testing.T, bk swapBackend) *swapStore {
	t.Helper()
	ctx := t.Context()
	dsn := bk.store(t)
	b, err := openBackend(ctx, dsn, readWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s := &swapStore{dsn: dsn, b: b, live: &sqlBalances{db: b.db, dialect: b.kind, schema: b.schema, name: balancesTableName}}
	if code, _, errOut := s.flux(ctx, nil, "projections", "rebuild", balancesProjection); code != 0 {
		t.Fatalf("rebuild in place: exit %d: %s", code, errOut)
	}
	m, _, _ := testMain()
	a, err := m.openApp(b)
	if err != nil {
		t.Fatal(err)
	}
	// 3 envelopes of 1 + 250 events: with the demo's 26, more than one
	// batch of 500.
	for i := range 3 {
		e, err := budget.AddEnvelope(fmt.Sprintf("swap-envelope-%d", i), "swap-user", fmt.Sprintf("envelope %d", i), 1_000_000, "EUR")
		if err != nil {
			t.Fatal(err)
		}
		for n := range 250 {
			if err := e.Credit(int64(n%7+1), ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.repo.Save(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.live.Put(ctx, budget.EnvelopeView{EnvelopeID: "stale", UserID: "nobody", Name: "planted before the swap", Currency: "EUR", TargetedAmount: 1, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if cp, head := s.checkpoint(t, balancesProjection), s.head(t); cp.Position >= head {
		t.Fatalf("the live checkpoint is at %d, the head at %d: a swap would not have to move it", cp.Position, head)
	}
	return s
}

// flux runs the command line on the store, with its progress (stderr)
// written to progress as well when it is not nil.
func (s *swapStore) flux(ctx context.Context, progress func(string), args ...string) (code int, out, errOut string) {
	m, stdout, stderr := testMain()
	m.Getenv = func(k string) string {
		return map[string]string{"FLUX_DSN": s.dsn, "KEY_MANAGEMENT_SECRET": demoSecret}[k]
	}
	if progress != nil {
		m.Stderr = writerFunc(func(p []byte) (int, error) {
			progress(string(p))
			return stderr.Write(p)
		})
	}
	code = m.Run(ctx, args)
	return code, stdout.String(), stderr.String()
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// readModel returns the live table's rows as text, to compare.
func (s *swapStore) readModel(ctx context.Context) (string, error) {
	views, err := s.live.List(ctx, "")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, v := range views {
		fmt.Fprintf(&b, "%+v\n", v)
	}
	return b.String(), nil
}

func (s *swapStore) mustReadModel(t *testing.T) string {
	t.Helper()
	rm, err := s.readModel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

func (s *swapStore) checkpoint(t *testing.T, name string) projection.Checkpoint {
	t.Helper()
	cp, err := s.b.store.LoadCheckpoint(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (s *swapStore) head(t *testing.T) int64 {
	t.Helper()
	h, err := s.b.store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fromScratch rebuilds the read model in place and returns it.
func (s *swapStore) fromScratch(t *testing.T) string {
	t.Helper()
	if code, _, errOut := s.flux(t.Context(), nil, "projections", "rebuild", balancesProjection); code != 0 {
		t.Fatalf("rebuild in place: exit %d: %s", code, errOut)
	}
	return s.mustReadModel(t)
}

// noCopyLeft fails unless the fresh table and its checkpoint are gone.
func (s *swapStore) noCopyLeft(t *testing.T) {
	t.Helper()
	fresh := s.live.withTable(balancesTableName + freshSuffix)
	if _, err := fresh.List(t.Context(), ""); err == nil {
		t.Errorf("the table %s is left over", fresh.table())
	}
	cps, err := s.b.store.ListCheckpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range cps {
		if cp.Name != balancesProjection {
			t.Errorf("checkpoint %q is left over", cp.Name)
		}
	}
}

var progressRE = regexp.MustCompile(`(\d+)/(\d+) events`)

// midRebuild reports whether a progress line shows a rebuild under way.
func midRebuild(line string) bool {
	m := progressRE.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	pos, _ := strconv.ParseInt(m[1], 10, 64)
	head, _ := strconv.ParseInt(m[2], 10, 64)
	return pos < head
}

func TestRebuildSwapKeepsTheOldReadModelUntilTheNewOneIsComplete(t *testing.T) {
	for _, bk := range swapBackends(t) {
		t.Run(bk.name, func(t *testing.T) {
			ctx := t.Context()
			s := openSwapStore(t, bk)
			old := s.mustReadModel(t)

			// A reader polls the live table throughout, and the progress
			// bar reads it after every batch it reports.
			var (
				mu    sync.Mutex
				seen  = map[string]int{}
				fails []error
			)
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case <-stop:
						return
					default:
					}
					rm, err := s.readModel(ctx)
					mu.Lock()
					if err != nil {
						fails = append(fails, err)
					} else {
						seen[rm]++
					}
					mu.Unlock()
				}
			}()
			mid := 0
			code, out, errOut := s.flux(ctx, func(line string) {
				if midRebuild(line) {
					mid++
				}
				if rm, err := s.readModel(ctx); err != nil || rm != old {
					t.Errorf("during the rebuild (%q), the live table reads as (%v)\n%s\nnot as before:\n%s", line, err, rm, old)
				}
			}, "projections", "rebuild", balancesProjection, "--swap")
			close(stop)
			<-stopped
			if code != 0 {
				t.Fatalf("rebuild --swap: exit %d: %s", code, errOut)
			}
			if mid == 0 {
				t.Fatalf("no progress was reported mid-rebuild, so nothing was read then: %q", errOut)
			}
			if !strings.Contains(out, "swapped it in") {
				t.Fatalf("output: %s", out)
			}
			swapped := s.mustReadModel(t)
			if strings.Contains(swapped, "stale") {
				t.Fatalf("the old read model is still live:\n%s", swapped)
			}
			if cp, head := s.checkpoint(t, balancesProjection), s.head(t); cp.Position != head {
				t.Fatalf("checkpoint at %d after the swap, head %d", cp.Position, head)
			}
			s.noCopyLeft(t)

			mu.Lock()
			if len(fails) > 0 {
				t.Errorf("the reader failed %d times, first: %v", len(fails), fails[0])
			}
			for rm, n := range seen {
				if rm != old && rm != swapped {
					t.Errorf("the reader saw, %d times, a read model neither old nor new:\n%s", n, rm)
				}
			}
			if seen[old] == 0 {
				t.Errorf("the reader never read the old read model")
			}
			mu.Unlock()

			// Swap again: a second swap works as well as the first.
			if code, _, errOut := s.flux(ctx, nil, "projections", "rebuild", balancesProjection, "--swap"); code != 0 {
				t.Fatalf("second rebuild --swap: exit %d: %s", code, errOut)
			}
			if again := s.mustReadModel(t); again != swapped {
				t.Fatalf("the second swap gives\n%s\nthe first gave\n%s", again, swapped)
			}
			if s.b.kind == "postgres" {
				var index string
				err := s.b.db.QueryRowContext(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2`, s.b.schema, balancesTableName).Scan(&index)
				if err != nil || index != balancesTableName+"_pkey" {
					t.Fatalf("the live table's primary key index is %q (%v), not %s_pkey", index, err, balancesTableName)
				}
			}
			if scratch := s.fromScratch(t); scratch != swapped {
				t.Fatalf("after the swap:\n%s\na rebuild from scratch:\n%s", swapped, scratch)
			}
		})
	}
}

func TestInterruptedRebuildSwapLeavesTheLiveReadModelAlone(t *testing.T) {
	for _, bk := range swapBackends(t) {
		t.Run(bk.name, func(t *testing.T) {
			s := openSwapStore(t, bk)
			old, oldCP := s.mustReadModel(t), s.checkpoint(t, balancesProjection)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			interrupted := false
			code, _, errOut := s.flux(ctx, func(line string) {
				if midRebuild(line) && !interrupted {
					interrupted = true
					cancel() // Ctrl-C
				}
			}, "projections", "rebuild", balancesProjection, "--swap")
			if !interrupted {
				t.Fatalf("no progress was reported mid-rebuild: %q", errOut)
			}
			if code != exitError || !strings.HasSuffix(errOut, "flux projections: interrupted\n") {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if rm := s.mustReadModel(t); rm != old {
				t.Fatalf("after the interruption the live table holds\n%s\nnot as before:\n%s", rm, old)
			}
			if cp := s.checkpoint(t, balancesProjection); cp.Position != oldCP.Position || !cp.UpdatedAt.Equal(oldCP.UpdatedAt) {
				t.Fatalf("checkpoint %+v after the interruption, %+v before", cp, oldCP)
			}
			s.noCopyLeft(t)

			if code, _, errOut := s.flux(t.Context(), nil, "projections", "rebuild", balancesProjection, "--swap"); code != 0 {
				t.Fatalf("rebuild --swap after the interruption: exit %d: %s", code, errOut)
			}
			swapped := s.mustReadModel(t)
			if cp, head := s.checkpoint(t, balancesProjection), s.head(t); cp.Position != head {
				t.Fatalf("checkpoint at %d after the swap, head %d", cp.Position, head)
			}
			if scratch := s.fromScratch(t); scratch != swapped {
				t.Fatalf("after the swap:\n%s\na rebuild from scratch:\n%s", swapped, scratch)
			}
		})
	}
}

func TestRebuildSwapReplacesACopyLeftByACrash(t *testing.T) {
	for _, bk := range swapBackends(t) {
		t.Run(bk.name, func(t *testing.T) {
			ctx := t.Context()
			s := openSwapStore(t, bk)
			// A crashed swap rebuild left its copy, with a view newer than
			// any event and its checkpoint at the head; on MySQL, a swap
			// that crashed after its rename left the old table too.
			fresh := s.live.withTable(balancesTableName + freshSuffix)
			if err := fresh.create(ctx, "CREATE TABLE "); err != nil {
				t.Fatal(err)
			}
			if err := fresh.Put(ctx, budget.EnvelopeView{EnvelopeID: groceriesID, UserID: "nobody", Name: "left by a crash", Currency: "EUR", Version: 1000}); err != nil {
				t.Fatal(err)
			}
			if err := s.b.store.SaveCheckpoint(ctx, projection.Checkpoint{Name: balancesProjection + shadowSuffix, Position: s.head(t)}); err != nil {
				t.Fatal(err)
			}
			if bk.name == "mysql" {
				if err := s.live.withTable(balancesTableName+oldSuffix).create(ctx, "CREATE TABLE "); err != nil {
					t.Fatal(err)
				}
			}
			if code, _, errOut := s.flux(ctx, nil, "projections", "rebuild", balancesProjection, "--swap"); code != 0 {
				t.Fatalf("rebuild --swap: exit %d: %s", code, errOut)
			}
			swapped := s.mustReadModel(t)
			s.noCopyLeft(t)
			if scratch := s.fromScratch(t); scratch != swapped {
				t.Fatalf("after the swap:\n%s\na rebuild from scratch:\n%s", swapped, scratch)
			}
		})
	}
}

// TestRebuildSwapOutput checks the command's output against
// testdata/cli/rebuild_swap*.golden, on every backend.
func TestRebuildSwapOutput(t *testing.T) {
	secret := "KEY_MANAGEMENT_SECRET=" + demoSecret
	cases := []cliCase{
		{name: "rebuild_swap", args: []string{"projections", "rebuild", balancesProjection, "--swap"}, env: []string{secret}, writes: true},
		{name: "rebuild_swap_usage", args: []string{"projections", "reset", balancesProjection, "--swap"}, code: exitUsage},
	}
	for _, c := range cases {
		t.Run("sqlite/"+c.name, func(t *testing.T) {
			golden(t, filepath.Join("cli", c.name+".golden"), runCLICase(t, c, fixture(t)))
		})
	}
	if *update {
		return // the golden files are written from SQLite
	}
	for _, srv := range testServers(t) {
		t.Run(srv.name, func(t *testing.T) {
			for _, c := range cases {
				got := runCLICase(t, c, serverDemo(t, srv))
				path := filepath.Join("testdata", "cli", c.name+".golden")
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if serverNormal(got) != serverNormal(string(want)) {
					t.Fatalf("output on %s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", srv.name, path, got, want)
				}
			}
		})
	}
}
