package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxui"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// The console's handlers on a large SQLite store: the first page of the
// stream list and the time travel of a 10,000-event aggregate. The store
// holds FLUX_UI_BENCH_EVENTS events (default 50,000; the acceptance figure
// is quoted at 1,000,000):
//
//	FLUX_UI_BENCH_EVENTS=1000000 go test -run '^$' -bench Console -count 6 ./fluxui/e2e
//
// The store is built once per size and kept in the temporary folder
// (flux-console-bench-N.db) for the next run.

// Account is the aggregate of the benchmark store. It takes no snapshots,
// so a load replays every event: the worst case.
type Account struct {
	flux.Root
	Balance int64             `json:"balance"`
	Count   int               `json:"count"`
	Last    string            `json:"last"`
	Notes   map[string]string `json:"notes,omitempty"`
}

type Deposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
		a.Count++
		a.Last = d.Note
	}
}

const bigStream = "account-big"

func benchEvents(b *testing.B) int {
	n := 50_000
	if s := os.Getenv("FLUX_UI_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 20_000 {
			b.Fatalf("FLUX_UI_BENCH_EVENTS=%q: give a whole number of at least 20000", s)
		}
		n = v
	}
	return n
}

// benchStore opens (building it on first use) a store of n events: one
// stream of 10,000 events and the rest in streams of 10.
func benchStore(b *testing.B, n int) *sqlitestore.Store {
	ctx := context.Background()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("flux-console-bench-%d.db", n))
	done := path + ".complete"
	if _, err := os.Stat(done); err != nil {
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			os.Remove(p)
		}
		start := time.Now()
		s, err := sqlitestore.Open(ctx, path, nil)
		if err != nil {
			b.Fatal(err)
		}
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		seq := 0
		event := func(i int) flux.EventData {
			seq++
			p, _ := json.Marshal(Deposited{Amount: int64(i%100 + 1), Currency: "EUR", Note: fmt.Sprintf("deposit %d", i)})
			return flux.EventData{EventID: fmt.Sprintf("00000000-0000-7000-8000-%012d", seq), EventName: "Deposited", EventVersion: 1,
				Payload: p, Metadata: flux.Metadata{RequestID: "bench", CorrelationID: fmt.Sprintf("corr-%d", seq/10)}, OccurredAt: at.Add(time.Duration(seq) * time.Second)}
		}
		for v := 0; v < 10_000; v += 1000 {
			evs := make([]flux.EventData, 1000)
			for i := range evs {
				evs[i] = event(v + i)
			}
			if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: bigStream, AggregateType: "Account", Expected: flux.Any, Events: evs}}}); err != nil {
				b.Fatal(err)
			}
		}
		for stream := 0; seq < n; {
			var req flux.AppendRequest
			for k := 0; k < 100 && seq < n; k++ {
				evs := make([]flux.EventData, min(10, n-seq))
				for i := range evs {
					evs[i] = event(i)
				}
				req.Streams = append(req.Streams, flux.StreamAppend{StreamID: fmt.Sprintf("account-%08d", stream), AggregateType: "Account", Expected: flux.NoStream, Events: evs})
				stream++
			}
			if _, err := s.Append(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %s with %d events in %s", path, n, time.Since(start).Round(time.Second))
	}
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkConsole(b *testing.B) {
	n := benchEvents(b)
	s := benchStore(b, n)
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) }, flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	h, err := fluxui.New(fluxui.Config{Store: s, Repository: repo})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, path, want string }{
		{"streams-first-page", "/streams", "account-00000049"},
		{"stream-first-page", "/stream?id=" + bigStream, "Deposited"},
		{"state-last-of-10000", "/state?id=" + bigStream, `<b id="state-version">10000</b>`},
		{"state-first", "/state?id=" + bigStream + "&version=1", `<b id="state-version">1</b>`},
		{"state-api-middle", "/api/state?id=" + bigStream + "&version=5000", `"count": 5000`},
		{"diff-last-two", "/diff?id=" + bigStream, `class="changed"`},
	} {
		b.Run(fmt.Sprintf("%s/events=%d", bc.name, n), func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, bc.path, nil)
				req.Host = "127.0.0.1:8080"
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), bc.want) {
					b.Fatalf("GET %s: %d, want %q:\n%.400s", bc.path, w.Code, bc.want, w.Body)
				}
			}
		})
	}
}
