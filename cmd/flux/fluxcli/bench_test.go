package fluxcli

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// TestBenchOnEveryBackend runs a small flux bench on SQLite and on each test
// server and checks that every workload ran on both sides and the ratio is
// the quotient of the two rates. (The figures themselves are not asserted:
// time is noise in a test.)
func TestBenchOnEveryBackend(t *testing.T) {
	dsns := map[string]string{"sqlite": ""}
	for _, srv := range testServers(t) {
		dsns[srv.name] = srv.fresh(t) // the bench makes its own scratch store on that server
	}
	for name, dsn := range dsns {
		t.Run(name, func(t *testing.T) {
			m, out, errOut := testMain()
			m.Getenv = func(k string) string { return map[string]string{"FLUX_DSN": dsn}[k] }
			if code := m.Run(context.Background(), []string{"bench", "--rounds", "1", "--scale", "0.02", "--json"}); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var got []benchResult
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
				if strings.TrimSpace(line) == "" {
					continue
				}
				var r benchResult
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				got = append(got, r)
			}
			want := []string{"append 1 event per save", "append 100 events per save", "load a 100-event aggregate",
				"load a 10000-event aggregate", "catch up the log through a projection"}
			if len(got) != len(want) {
				t.Fatalf("%d results, want %d:\n%s", len(got), len(want), out)
			}
			for i, r := range got {
				if r.Workload != want[i] || r.Events <= 0 || r.Raw <= 0 || r.Flux <= 0 || math.Abs(r.Ratio-r.Flux/r.Raw) > 1e-9 {
					t.Errorf("result %d: %+v", i, r)
				}
			}
			if !strings.Contains(out.String(), "benchmark on a scratch "+name+" store") {
				t.Errorf("header: %s", out)
			}
		})
	}
}

// TestBenchStopsWhenCancelled cancels a bench (Ctrl-C) after its first
// workload and expects a one-line error and a failing exit.
func TestBenchStopsWhenCancelled(t *testing.T) {
	m, _, _ := testMain()
	errOut := &lockedBuffer{}
	m.Stderr = errOut
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil && !strings.Contains(errOut.String(), "done: append 1 event per save") {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if code := m.Run(ctx, []string{"bench", "--rounds", "3", "--scale", "0.2"}); code == 0 {
		t.Fatal("a cancelled bench succeeded")
	}
	last := strings.TrimSpace(errOut.String())
	last = last[strings.LastIndex(last, "\n")+1:]
	if last != "flux bench: interrupted" {
		t.Fatalf("stderr: %q", errOut.String())
	}
}
