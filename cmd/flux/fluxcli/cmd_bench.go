package fluxcli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/uuid"
)

// Deposited is the benchmark's event.
type Deposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

// BenchAccount is the benchmark's aggregate.
type BenchAccount struct {
	flux.Root
	Balance int64
	Count   int
}

// Apply implements flux.Aggregate.
func (a *BenchAccount) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
		a.Count++
	}
}

var benchDeposit = Deposited{Amount: 1250, Currency: "EUR", Note: "monthly savings transfer"}

// rawDriver is the plain driver doing what the framework does, on the same
// tables and settings: the baseline of every workload.
type rawDriver interface {
	// insert writes n events to stream after version from, in one
	// transaction (one round trip per row, as plain code would).
	insert(ctx context.Context, stream string, from int64, n int, payload []byte) error
	// load reads a stream's rows in version order and returns the count.
	load(ctx context.Context, stream string) (int, error)
	// scanLog reads the log up to position upTo in pages of 500 rows and
	// returns the count.
	scanLog(ctx context.Context, upTo int64) (int, error)
	Close() error
}

// scratch is a throwaway store of the chosen backend's kind.
type scratch struct {
	backend *Backend
	raw     rawDriver
	cleanup func()
}

// scratchers create a scratch store per backend kind.
var scratchers = map[string]func(ctx context.Context, dsn string) (*scratch, error){
	"sqlite": sqliteScratch,
}

func sqliteScratch(ctx context.Context, _ string) (*scratch, error) {
	dir, err := os.MkdirTemp("", "flux-bench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bench.db")
	b, err := openBackend(ctx, path, create)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	raw, err := newSQLiteRaw(path)
	if err != nil {
		b.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return &scratch{backend: b, raw: raw, cleanup: func() { raw.Close(); b.Close(); os.RemoveAll(dir) }}, nil
}

const benchSynopsis = `Runs the standard workload against a scratch store of the chosen backend
(a temporary SQLite file; a temporary schema or database on a server), each
workload first with the raw driver on the same tables and settings, then
with FluxCapacitor, and prints both throughputs and their ratio (the median
of --rounds runs). Your data is not touched.

Workloads: append 1 event per save, append 100 per save, load a 100-event
and a 10,000-event aggregate, catch up the whole log through a projection.`

func runBench(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("bench [--dsn DSN] [--rounds N] [--scale F]", benchSynopsis,
		"  flux bench\n  flux bench --dsn postgres://postgres@127.0.0.1:5432/test --rounds 5")
	c := addCommon(fs)
	rounds := fs.Int("rounds", 3, "runs per workload; the median is shown")
	scale := fs.Float64("scale", 1, "multiply the workload sizes by `f` (0.1 for a quick look)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rounds < 1 || *scale <= 0 {
		return &usageError{"--rounds must be >= 1 and --scale > 0"}
	}
	dsn := m.dsnOf(*c.dsn)
	kind := ""
	for _, o := range openers {
		if o.matches(dsn) {
			kind = o.kind
			break
		}
	}
	mk, ok := scratchers[kind]
	if !ok {
		return fmt.Errorf("bench does not support %s stores in this build", kind)
	}
	sc, err := mk(ctx, dsn)
	if err != nil {
		return err
	}
	defer sc.cleanup()
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *BenchAccount { return new(BenchAccount) },
		flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		return err
	}
	repo, err := flux.NewRepository(flux.Config{Store: sc.backend.store, Registry: reg})
	if err != nil {
		return err
	}
	n := func(x int) int { return max(1, int(float64(x)**scale)) }
	payload, _ := json.Marshal(benchDeposit)
	fmt.Fprintf(m.Stdout, "benchmark on a scratch %s store, median of %d rounds\n\n", sc.backend.kind, *rounds)
	var rows [][]string
	var results []benchResult
	streams := 0
	newStream := func(p string) string { streams++; return fmt.Sprintf("%s-%d", p, streams) }
	workloads := []struct {
		name   string
		events int
		raw    func() error
		flux   func() error
	}{
		{"append 1 event per save", n(2000), func() error {
			s := newStream("raw1")
			for i := 0; i < n(2000); i++ {
				if err := sc.raw.insert(ctx, s, int64(i), 1, payload); err != nil {
					return err
				}
			}
			return nil
		}, func() error {
			a := new(BenchAccount)
			a.SetID(newStream("flux1"))
			for i := 0; i < n(2000); i++ {
				flux.Raise(a, benchDeposit)
				if err := repo.Save(ctx, a); err != nil {
					return err
				}
			}
			return nil
		}},
		{"append 100 events per save", n(50) * 100, func() error {
			s := newStream("raw100")
			for i := 0; i < n(50); i++ {
				if err := sc.raw.insert(ctx, s, int64(i*100), 100, payload); err != nil {
					return err
				}
			}
			return nil
		}, func() error {
			a := new(BenchAccount)
			a.SetID(newStream("flux100"))
			for i := 0; i < n(50); i++ {
				for j := 0; j < 100; j++ {
					flux.Raise(a, benchDeposit)
				}
				if err := repo.Save(ctx, a); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	loadSizes := []int{100, 10000}
	for _, size := range loadSizes {
		id := fmt.Sprintf("load-%d", size)
		if err := sc.raw.insert(ctx, id, 0, size, payload); err != nil {
			return err
		}
		times := n(20000 / size * 10)
		workloads = append(workloads, struct {
			name   string
			events int
			raw    func() error
			flux   func() error
		}{fmt.Sprintf("load a %d-event aggregate", size), times * size, func() error {
			for i := 0; i < times; i++ {
				if got, err := sc.raw.load(ctx, id); err != nil || got != size {
					return fmt.Errorf("raw load read %d rows: %v", got, err)
				}
			}
			return nil
		}, func() error {
			for i := 0; i < times; i++ {
				if _, err := flux.Load[*BenchAccount](ctx, repo, id); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	// The catch-up reads the log as the store numbers it, up to its head,
	// on both sides.
	var logSize int
	workloads = append(workloads, struct {
		name   string
		events int
		raw    func() error
		flux   func() error
	}{"catch up the log through a projection", 0, func() error {
		head, err := sc.backend.store.Head(ctx)
		if err != nil {
			return err
		}
		logSize, err = sc.raw.scanLog(ctx, head)
		return err
	}, func() error {
		head, err := sc.backend.store.Head(ctx)
		if err != nil {
			return err
		}
		sub, err := projection.Subscribe(ctx, repo, projection.SubscriptionOptions{UpTo: head})
		if err != nil {
			return err
		}
		n := 0
		for {
			b, err := sub.Next(ctx)
			n += len(b.Events)
			if err == projection.ErrCaughtUp {
				if n != logSize {
					return fmt.Errorf("the projection read %d events, the raw scan %d", n, logSize)
				}
				return nil
			} else if err != nil {
				return err
			}
		}
	}})
	for _, w := range workloads {
		var rawTimes, fluxTimes []time.Duration
		for r := 0; r < *rounds; r++ {
			for _, side := range []struct {
				fn    func() error
				times *[]time.Duration
			}{{w.raw, &rawTimes}, {w.flux, &fluxTimes}} {
				start := time.Now()
				if err := side.fn(); err != nil {
					if ctx.Err() != nil {
						return fmt.Errorf("bench interrupted: %w", ctx.Err())
					}
					return fmt.Errorf("%s: %w", w.name, err)
				}
				*side.times = append(*side.times, time.Since(start))
			}
		}
		events := w.events
		if events == 0 {
			events = logSize
		}
		res := benchResult{Workload: w.name, Events: events, Raw: rate(events, median(rawTimes)), Flux: rate(events, median(fluxTimes))}
		res.Ratio = res.Flux / res.Raw
		results = append(results, res)
		rows = append(rows, []string{res.Workload, fmt.Sprint(res.Events), fmt.Sprintf("%.0f", res.Raw), fmt.Sprintf("%.0f", res.Flux), fmt.Sprintf("%.2f", res.Ratio)})
		fmt.Fprintf(m.Stderr, "done: %s\n", w.name)
	}
	if *c.json {
		return jsonLines(m.Stdout, results)
	}
	if err := table(m.Stdout, []string{"WORKLOAD", "EVENTS", "RAW (EVENTS/S)", "FLUX (EVENTS/S)", "RATIO"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, "\nRATIO is FluxCapacitor's throughput over the raw driver's (1.00: as fast).")
	return nil
}

type benchResult struct {
	Workload string  `json:"workload"`
	Events   int     `json:"events"`
	Raw      float64 `json:"raw_events_per_s"`
	Flux     float64 `json:"flux_events_per_s"`
	Ratio    float64 `json:"ratio"`
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func rate(events int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(events) / d.Seconds()
}

// newEventID returns event IDs for raw inserts.
var benchIDs uuid.Generator

func benchTime() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") }
