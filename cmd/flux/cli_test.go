package main

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

var durationRE = regexp.MustCompile(`in [0-9.]+(µs|ms|s|m)`)

func TestCommands(t *testing.T) {
	secret := "KEY_MANAGEMENT_SECRET=" + demoSecret
	cases := []struct {
		name  string
		args  []string
		env   []string
		stdin string
		code  int
	}{
		{"streams", []string{"streams"}, nil, "", 0},
		{"streams_json", []string{"streams", "--type", "BudgetEnvelope", "--json"}, nil, "", 0},
		{"events_stream_encrypted", []string{"events", "--stream", bobID}, nil, "", 0},
		{"events_stream_decrypted", []string{"events", "--stream", bobID, "--full"}, []string{secret}, "", 0},
		{"events_forgotten", []string{"events", "--stream", adaID, "--full"}, []string{secret}, "", 0},
		{"events_filtered", []string{"events", "--type", "BudgetEnvelopeCredited", "--since", "2026-11-24 20:00", "--until", "2026-11-25 03:00", "--limit", "3"}, []string{secret}, "", 0},
		{"events_json", []string{"events", "--stream", tripID, "--json"}, []string{secret}, "", 0},
		{"events_upcast", []string{"events", "--stream", groceriesID, "--since", "2026-11-25 00:00", "--limit", "1", "--full"}, []string{secret}, "", 0},
		{"state_user", []string{"state", "User", bobID}, []string{secret}, "", 0},
		{"state_user_hidden", []string{"state", "User", bobID}, nil, "", 0},
		{"state_at", []string{"state", "BudgetEnvelope", groceriesID, "--at", "2026-11-24 19:30"}, nil, "", 0},
		{"state_version_diff", []string{"state", "BudgetEnvelope", tripID, "--version", "1", "--diff", "now"}, nil, "", 0},
		{"state_json", []string{"state", "BudgetEnvelope", tripID, "--json"}, nil, "", 0},
		{"trace", []string{"trace", "demo-00000000"}, nil, "", 0},
		{"trace_php_import", []string{"trace", "php-import", "--json"}, nil, "", 0},
		{"projections", []string{"projections"}, nil, "", 0},
		{"projections_rebuild", []string{"projections", "rebuild", "envelope-balances"}, []string{secret}, "", 0},
		{"snapshots", []string{"snapshots"}, nil, "", 0},
		{"snapshots_prune", []string{"snapshots", "prune", "--keep", "1"}, nil, "", 0},
		{"forget_confirmed", []string{"forget", bobID, "--by", "dpo", "--reason", "ticket 7"}, nil, bobID + "\n", 0},
		{"forget_not_confirmed", []string{"forget", bobID}, nil, "nope\n", 1},
		{"forget_already", []string{"forget", adaID, "--yes"}, nil, "", 0},
		{"keys_rotate", []string{"keys", "rotate", "--new-secret-env", "NEW"}, []string{secret, "NEW=another-secret-of-sufficient-length"}, "", 0},
		{"keys_rotate_wrong_secret", []string{"keys", "rotate", "--new-secret-env", "NEW"}, []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all", "NEW=another-secret-of-sufficient-length"}, "", 1},
		{"error_unknown_stream", []string{"events", "--stream", "nobody"}, nil, "", 1},
		{"error_malformed_time", []string{"events", "--since", "yesterday-ish"}, nil, "", 2},
		{"error_unknown_type", []string{"state", "Spaceship", "x"}, nil, "", 2},
		{"error_no_aggregate", []string{"state", "User", "nobody"}, nil, "", 1},
		{"error_wrong_secret", []string{"state", "User", bobID}, []string{"KEY_MANAGEMENT_SECRET=not-the-right-secret-at-all"}, "", 1},
		{"error_missing_store", []string{"streams", "--dsn", "/nonexistent/flux.db"}, nil, "", 1},
		{"error_unknown_correlation", []string{"trace", "nope"}, nil, "", 1},
		{"error_unknown_projection", []string{"projections", "rebuild", "nope"}, nil, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := fixture(t)
			m, out, errOut := testMain()
			env := map[string]string{"FLUX_DSN": db}
			for _, kv := range c.env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			m.Getenv = func(k string) string { return env[k] }
			m.Stdin = strings.NewReader(c.stdin)
			code := m.Run(context.Background(), c.args)
			got := "$ flux " + strings.Join(c.args, " ") + "\n" + out.String()
			if errOut.Len() > 0 {
				got += "--- stderr ---\n" + errOut.String()
			}
			got = durationRE.ReplaceAllLiteralString(strings.ReplaceAll(got, db, "$DB"), "in $DURATION")
			got = strings.ReplaceAll(got, "\r", "\n")
			if code != c.code {
				t.Fatalf("exit %d, want %d:\n%s", code, c.code, got)
			}
			if c.code != 0 && strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
				t.Fatalf("the error is not one line:\n%s", errOut)
			}
			golden(t, filepath.Join("cli", c.name+".golden"), got)
		})
	}
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for name := range commands() {
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
