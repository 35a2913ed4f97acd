package sqlitestore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// warnCounter counts the warnings and errors a runner logs.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.n.Add(1)
	fmt.Fprintf(os.Stderr, "runner: %s %s\n", r.Level, r.Message)
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

const (
	sharedProjection   = "shared-across-processes"
	sharedTxProjection = "shared-tx-across-processes"
)

// runSharedProjector runs, on the database at path, the at-least-once
// projection sharedProjection, appending the position of every event it
// handles to the file out, and the exactly-once projection
// sharedTxProjection, counting into the table shared_counts, until the
// file stop exists; then it prints its status.
func runSharedProjector(t *testing.T, path, out, stop string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	warns := &warnCounter{}
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: crashRepo(t, s), BatchSize: 7, PollInterval: time.Millisecond,
		MinBackoff: time.Millisecond, Logger: slog.New(warns)})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(projection.New(sharedProjection, func(ctx context.Context, e flux.Envelope) error {
		_, err := fmt.Fprintln(f, e.Position) // one write per event: survives the process
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(countingProjection(s, sharedTxProjection, "shared_counts")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	fmt.Println("projecting")
	for {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	failures, lastErrors := 0, ""
	for _, s := range st {
		failures += s.Failures
		lastErrors += s.LastError
	}
	fmt.Printf("status failures=%d warnings=%d processed=%d+%d lasterror=%q\n", failures, warns.n.Load(), st[0].Processed, st[1].Processed, lastErrors)
}

// TestThreeProcessesShareAProjection runs an at-least-once and an
// exactly-once (NewTx) projection in three processes on one database file
// while this process appends: no checkpoint ever moves backwards, every
// event is handled by some process (and applied exactly once by the
// transactional projection), and no process counts a failure or logs a
// warning for losing a race to another.
func TestThreeProcessesShareAProjection(t *testing.T) {
	if path := os.Getenv("FLUX_SHARED_PROJECTOR"); path != "" {
		runSharedProjector(t, path, os.Getenv("FLUX_SHARED_OUT"), os.Getenv("FLUX_SHARED_STOP"))
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path, stop := filepath.Join(dir, "shared.db"), filepath.Join(dir, "stop")
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createCountTables(t, path, "shared_counts")

	const procs = 3
	type child struct {
		cmd    *exec.Cmd
		out    string
		status chan string
	}
	children := make([]child, procs)
	for i := range children {
		c := child{out: filepath.Join(dir, fmt.Sprintf("handled-%d", i)), status: make(chan string, 1)}
		c.cmd = exec.Command(os.Args[0], "-test.run=^TestThreeProcessesShareAProjection$")
		c.cmd.Env = append(os.Environ(), "FLUX_SHARED_PROJECTOR="+path, "FLUX_SHARED_OUT="+c.out, "FLUX_SHARED_STOP="+stop)
		var stderr bytes.Buffer
		c.cmd.Stderr = &stderr
		stdout, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
			if t.Failed() && stderr.Len() > 0 {
				t.Logf("process %d stderr:\n%s", i, stderr.String())
			}
		})
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				switch line := sc.Text(); {
				case line == "projecting":
					close(ready)
				case strings.HasPrefix(line, "status "):
					c.status <- line
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(time.Minute):
			t.Fatalf("process %d did not start", i)
		}
		children[i] = c
	}

	// Watch the checkpoint while appending.
	watchDone := make(chan struct{})
	backwards := make(chan []string, 1)
	go func() {
		var seen []string
		var last [2]int64
		for {
			select {
			case <-watchDone:
				backwards <- seen
				return
			default:
			}
			for i, name := range []string{sharedProjection, sharedTxProjection} {
				cp, err := s.LoadCheckpoint(ctx, name)
				if err == nil && cp.Position < last[i] {
					seen = append(seen, fmt.Sprintf("%s: %d -> %d", name, last[i], cp.Position))
				}
				last[i] = max(last[i], cp.Position)
			}
		}
	}()
	appends, per := 80, 5
	if testing.Short() {
		appends = 20
	}
	for i := 0; i < appends; i++ {
		evs := make([]flux.EventData, per)
		for j := range evs {
			evs[j] = flux.EventData{EventID: ids.New(), EventName: "Counted", EventVersion: 1, Payload: []byte(fmt.Sprintf(`{"n":%d}`, j)), OccurredAt: time.Now()}
		}
		if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: fmt.Sprintf("shared-%d", i%4), AggregateType: "Counted",
			Expected: flux.Any, Events: evs}}}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // let the projectors catch up now and then
		}
	}
	total := int64(appends * per)
	for {
		cp, err := s.LoadCheckpoint(ctx, sharedProjection)
		if err != nil {
			t.Fatal(err)
		}
		txcp, err := s.LoadCheckpoint(ctx, sharedTxProjection)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Position >= total && txcp.Position >= total {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("checkpoint at %d, never reached %d", cp.Position, total)
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(watchDone)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for i, c := range children {
		select {
		case line := <-c.status:
			statuses = append(statuses, line)
			if !strings.Contains(line, "failures=0 warnings=0 ") || !strings.HasSuffix(line, `lasterror=""`) {
				t.Errorf("process %d: %s; losing a race to another process is no failure", i, line)
			}
		case <-time.After(time.Minute):
			t.Fatalf("process %d did not stop", i)
		}
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	if b := <-backwards; len(b) > 0 {
		t.Fatalf("the checkpoint moved backwards %d times; first: %v", len(b), b[:min(len(b), 5)])
	}
	handled := map[int64]int{}
	for _, c := range children {
		data, err := os.ReadFile(c.out)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, line := range strings.Fields(string(data)) {
			p, err := strconv.ParseInt(line, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			handled[p]++
		}
	}
	times := 0
	for p := int64(1); p <= total; p++ {
		if handled[p] == 0 {
			t.Fatalf("the event at position %d was handled by no process", p)
		}
		times += handled[p]
	}
	var counted, applied int64
	if err := s.DB().QueryRow(`SELECT COALESCE(SUM(n), 0), (SELECT COUNT(*) FROM shared_counts_applied) FROM shared_counts`).Scan(&counted, &applied); err != nil {
		t.Fatal(err)
	}
	if counted != total || applied != total {
		t.Fatalf("the exactly-once projection counted %d events, %d applied; want %d", counted, applied, total)
	}
	t.Logf("%d events handled %d times (at least once) and %d times (exactly once) by %d processes; %s", total, times, counted, procs, strings.Join(statuses, "; "))
}
