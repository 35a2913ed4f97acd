package fluxcli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// IDs the demo hands out with testMain's NewID.
const (
	adaID       = "00000000-0000-4000-8000-000000000002"
	bobID       = "00000000-0000-4000-8000-000000000003"
	groceriesID = "00000000-0000-4000-8000-000000000004"
	tripID      = "00000000-0000-4000-8000-000000000005"
)

var (
	fixtureOnce sync.Once
	fixtureDB   string
	fixtureErr  error
)

// fixture returns a copy of a store filled by the demo.
func fixture(t *testing.T) string {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flux-cli-fixture-")
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureDB = filepath.Join(dir, "fixture.db")
		m, _, errOut := testMain()
		if code := m.Run(context.Background(), []string{"demo", "--db", fixtureDB}); code != 0 {
			fixtureErr = &usageError{"demo failed: " + errOut.String()}
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	data, err := os.ReadFile(fixtureDB)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flux.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var storePkgRE = regexp.MustCompile(`\b(sqlitestore|pgstore|mysqlstore): `)

var durationRE = regexp.MustCompile(`in [0-9.]+(µs|ms|s|m)`)

// cliCase is one command line run against a store the demo filled.
type cliCase struct {
	name  string
	args  []string
	env   []string
	stdin string
	code  int
	// writes marks a case that changes the store, so that on a server it
	// gets a store of its own rather than the shared one.
	writes bool
	// sqliteOnly marks a case about SQLite files.
	sqliteOnly bool
	// stock runs the case as the stock flux, without the application.
	stock bool
}

func cliCases() []cliCase {
	secret := "KEY_MANAGEMENT_SECRET=" + demoSecret
	return []cliCase{
		{name: "streams", args: []string{"streams"}},
		{name: "streams_json", args: []string{"streams", "--type", "BudgetEnvelope", "--json"}},
		{name: "events_stream_encrypted", args: []string{"events", "--stream", bobID}},
		{name: "events_stream_decrypted", args: []string{"events", "--stream", bobID, "--full"}, env: []string{secret}},
		{name: "events_forgotten", args: []string{"events", "--stream", adaID, "--full"}, env: []string{secret}},
		{name: "events_filtered", args: []string{"events", "--type", "BudgetEnvelopeCredited", "--since", "2026-11-24 20:00", "--until", "2026-11-25 03:00", "--limit", "3"}, env: []string{secret}},
		{name: "events_json", args: []string{"events", "--stream", tripID, "--json"}, env: []string{secret}},
		{name: "events_upcast", args: []string{"events", "--stream", groceriesID, "--since", "2026-11-25 00:00", "--limit", "1", "--full"}, env: []string{secret}},
		{name: "state_user", args: []string{"state", "User", bobID}, env: []string{secret}},
		{name: "state_user_hidden", args: []string{"state", "User", bobID}},
		{name: "state_at", args: []string{"state", "BudgetEnvelope", groceriesID, "--at", "2026-11-24 19:30"}},
		{name: "state_version_diff", args: []string{"state", "BudgetEnvelope", tripID, "--version", "1", "--diff", "now"}},
		{name: "state_json", args: []string{"state", "BudgetEnvelope", tripID, "--json"}},
		{name: "trace", args: []string{"trace", "demo-00000000-05"}},
		{name: "trace_php_import", args: []string{"trace", "php-import", "--json"}},
		{name: "projections", args: []string{"projections"}},
		{name: "projections_rebuild", args: []string{"projections", "rebuild", "envelope-balances"}, env: []string{secret}, writes: true},
		{name: "snapshots", args: []string{"snapshots"}},
		{name: "snapshots_prune", args: []string{"snapshots", "prune", "--keep", "1"}, writes: true},
		{name: "forget_confirmed", args: []string{"forget", bobID, "--by", "dpo", "--reason", "ticket 7"}, stdin: bobID + "\n", writes: true},
		{name: "forget_not_confirmed", args: []string{"forget", bobID}, stdin: "nope\n", code: 1},
		{name: "forget_already", args: []string{"forget", adaID, "--yes"}},
		{name: "keys_rotate", args: []string{"keys", "rotate", "--new-secret-env", "NEW"}, env: []string{secret, "NEW=another-secret-of-sufficient-length"}, writes: true},
		{name: "keys_rotate_wrong_secret", args: []string{"keys", "rotate", "--new-secret-env", "NEW"}, env: []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all", "NEW=another-secret-of-sufficient-length"}, code: 1},
		{name: "error_unknown_stream", args: []string{"events", "--stream", "nobody"}, code: 1},
		{name: "error_malformed_time", args: []string{"events", "--since", "yesterday-ish"}, code: 2},
		{name: "error_unknown_type", args: []string{"state", "Spaceship", "x"}, code: 2},
		{name: "error_no_aggregate", args: []string{"state", "User", "nobody"}, code: 1},
		{name: "error_wrong_secret", args: []string{"state", "User", bobID}, env: []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all"}, code: 1},
		{name: "error_missing_store", args: []string{"streams", "--dsn", "/nonexistent/flux.db"}, code: 1, sqliteOnly: true},
		{name: "migrate", args: []string{"migrate"}, sqliteOnly: true}, // names the store
		{name: "migrate_json", args: []string{"migrate", "--json"}, sqliteOnly: true},
		{name: "events_correlation", args: []string{"events", "--correlation", "demo-00000000-08"}},
		{name: "events_request", args: []string{"events", "--request", "php-import", "--json"}},
		{name: "projections_reset", args: []string{"projections", "reset", "envelope-balances"}, stdin: "envelope-balances\n", writes: true},
		{name: "snapshots_delete", args: []string{"snapshots", "delete", "--yes", "--json"}, writes: true},
		{name: "forget_json", args: []string{"forget", adaID, "--yes", "--json"}},
		{name: "error_events_wrong_secret", args: []string{"events", "--stream", bobID}, env: []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all"}, code: 1},
		{name: "error_trace_wrong_secret", args: []string{"trace", "demo-00000000-02"}, env: []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all"}, code: 1},
		{name: "error_at_and_version", args: []string{"state", "BudgetEnvelope", tripID, "--at", "2026-11-24 19:30", "--version", "2"}, code: 2},
		{name: "error_bad_mysql_dsn", args: []string{"streams", "--dsn", "mysql://garbage"}, code: 1, sqliteOnly: true},
		{name: "error_bad_postgres_dsn", args: []string{"streams", "--dsn", "postgres://app@db:notaport/x"}, code: 1, sqliteOnly: true},
		{name: "error_relay_without_nats", args: []string{"relay"}, code: 2},
		{name: "error_relay_nats_down", args: []string{"relay", "--nats", "nats://127.0.0.1:1"}, code: 1, sqliteOnly: true},
		{name: "error_unknown_correlation", args: []string{"trace", "nope"}, code: 1},
		{name: "error_unknown_projection", args: []string{"projections", "rebuild", "nope"}, code: 1},
		{name: "stock_events", args: []string{"events", "--stream", bobID}, env: []string{secret}, stock: true},
		{name: "stock_events_type", args: []string{"events", "--type", "UserSignedUp", "--json"}, stock: true},
		{name: "stock_trace", args: []string{"trace", "demo-00000000-05"}, stock: true},
		{name: "stock_streams", args: []string{"streams", "--type", "User"}, stock: true},
		{name: "stock_snapshots", args: []string{"snapshots"}, stock: true},
		{name: "stock_projections", args: []string{"projections"}, stock: true},
		{name: "stock_error_state", args: []string{"state", "User", bobID}, stock: true, code: 1},
		{name: "stock_error_rebuild", args: []string{"projections", "rebuild", "envelope-balances"}, stock: true, code: 1},
		{name: "error_negative_limit", args: []string{"events", "--limit", "-5"}, code: 2},
		{name: "error_negative_version", args: []string{"state", "User", bobID, "--version", "-1"}, code: 2},
		{name: "error_no_command", args: []string{}, code: 2},
		{name: "error_unknown_command", args: []string{"stats"}, code: 2},
		{name: "help_command", args: []string{"help", "streams"}},
		{name: "error_not_a_dsn", args: []string{"streams", "--dsn", "db.example.com:5432/app"}, code: 1, sqliteOnly: true},
	}
}

// TestCommands runs every command on a copy of a SQLite store the demo
// filled and compares the output with testdata/cli. TestCommandsOnServers
// runs the same cases on PostgreSQL and MySQL/MariaDB against the same
// files: the output does not depend on the backend.
func TestCommands(t *testing.T) {
	for _, c := range cliCases() {
		t.Run(c.name, func(t *testing.T) {
			db := fixture(t)
			golden(t, filepath.Join("cli", c.name+".golden"), runCLICase(t, c, db))
		})
	}
}

// runCLICase runs c with FLUX_DSN set to dsn, checks its exit code and
// returns its output, normalised for comparison with a golden file.
func runCLICase(t *testing.T, c cliCase, dsn string) string {
	t.Helper()
	m, out, errOut := testMain()
	env := map[string]string{"FLUX_DSN": dsn}
	for _, kv := range c.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	m.Getenv = func(k string) string { return env[k] }
	m.Stdin = strings.NewReader(c.stdin)
	if c.stock {
		m.Config = Config{}
	}
	code := m.Run(context.Background(), c.args)
	got := "$ flux " + strings.Join(c.args, " ") + "\n" + out.String()
	if errOut.Len() > 0 {
		got += "--- stderr ---\n" + errOut.String()
	}
	got = durationRE.ReplaceAllLiteralString(strings.ReplaceAll(got, dsn, "$DB"), "in $DURATION")
	got = strings.ReplaceAll(got, "\r", "\n")
	// Errors name the store package; the rest of the output is the same on
	// every backend.
	got = storePkgRE.ReplaceAllLiteralString(got, "$STORE: ")
	if code != c.code {
		t.Fatalf("exit %d, want %d:\n%s", code, c.code, got)
	}
	if c.code != 0 && len(c.args) > 0 && strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
		t.Fatalf("the error is not one line:\n%s", errOut)
	}
	return got
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for name := range (&Main{Config: demoConfig()}).commands() {
		m, out, _ := testMain()
		args := []string{name, "--help"}
		if code := m.Run(context.Background(), args); code != 0 || !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "Usage: flux "+name) {
			t.Errorf("flux %s --help: exit %d\n%s", name, code, out)
		}
	}
}

// lockedBuffer is written by a running command and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestProjectionsRunServesMetrics(t *testing.T) {
	db := fixture(t)
	m, _, _ := testMain()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	m.Stdout, m.Stderr = out, errOut
	m.Getenv = func(k string) string {
		return map[string]string{"FLUX_DSN": db, "KEY_MANAGEMENT_SECRET": demoSecret}[k]
	}
	// The demo left the projection caught up: reset it, so that running it
	// has batches to measure.
	if code := m.Run(context.Background(), []string{"projections", "reset", balancesProjection, "--yes"}); code != 0 {
		t.Fatalf("reset: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out.String(), "projection envelope-balances reset") {
		t.Fatalf("reset output: %s", out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- m.Run(ctx, []string{"projections", "run", "--metrics-addr", "127.0.0.1:0"}) }()
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	re := regexp.MustCompile(`http://([0-9.:]+)/metrics`)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address in %q", errOut.String())
		}
		if mm := re.FindStringSubmatch(errOut.String()); mm != nil {
			addr = mm[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	var body string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, `projection="envelope-balances"`) && strings.Contains(body, "flux_projection_batch") {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"flux_projection_lag_events", `projection="envelope-balances"`, "flux_projection_batch"} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s:\n%s", want, body)
		}
	}
	if !strings.Contains(out.String(), "running projections") {
		t.Fatalf("output: %s", out)
	}
}

// Help is printed once, on stdout, when asked for; a mistake is one line
// on stderr and no help.
func TestUsageIsPrintedOnce(t *testing.T) {
	for _, args := range [][]string{{"streams", "--help"}, {"help", "streams"}, {"streams", "-h"}} {
		m, out, errOut := testMain()
		if code := m.Run(context.Background(), args); code != 0 || strings.Count(out.String(), "Usage: flux streams") != 1 || errOut.Len() != 0 {
			t.Errorf("flux %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}} {
		m, out, errOut := testMain()
		if code := m.Run(context.Background(), args); code != 0 || strings.Count(out.String(), "Usage: flux <command>") != 1 || errOut.Len() != 0 {
			t.Errorf("flux %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	m, out, errOut := testMain()
	if code := m.Run(context.Background(), []string{"streams", "--bogus"}); code != exitUsage || out.Len() != 0 || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("flux streams --bogus: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
