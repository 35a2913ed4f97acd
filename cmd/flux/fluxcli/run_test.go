package fluxcli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testMain returns a Main with a fixed clock and predictable IDs.
func testMain() (*Main, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	n, e := 0, 0
	return &Main{
		Stdout: &out,
		Stderr: &errOut,
		Clock:  func() time.Time { return time.Date(2026, 11, 25, 12, 34, 0, 0, time.UTC) },
		NewID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
		NewEventID: func() string {
			e++
			return fmt.Sprintf("00000000-0000-7000-9000-%012d", e)
		},
		Getenv: func(string) string { return "" },
		Config: demoConfig(),
	}, &out, &errOut
}

func TestDemoOutput(t *testing.T) {
	m, out, errOut := testMain()
	db := filepath.Join(t.TempDir(), "demo.db")
	if code := m.Run(context.Background(), []string{"demo", "--db", db}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	golden(t, "demo.golden", strings.ReplaceAll(out.String(), db, "$DB"))
}

func TestDemoWithoutDBUsesATemporaryFile(t *testing.T) {
	m, out, errOut := testMain()
	if code := m.Run(context.Background(), []string{"demo"}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	// The database is kept in a new temporary directory, to inspect.
	m2 := regexp.MustCompile(`The demo store is kept at (\S+)\.\n`).FindStringSubmatch(out.String())
	if m2 == nil {
		t.Fatalf("output: %s", out)
	}
	path := m2[1]
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(path)) })
	if !strings.HasPrefix(path, os.TempDir()) || filepath.Base(path) != "flux.db" {
		t.Fatalf("the demo database is at %s, not in a temporary directory", path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the demo database is gone: %v", err)
	}
	if !strings.Contains(out.String(), "flux streams --dsn "+path) {
		t.Fatalf("no hint to inspect it: %s", out)
	}
}

func TestCommandLineErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage: flux <command>"},
		{[]string{"help"}, exitOK, "demo"},
		{[]string{"nope"}, exitUsage, `flux: unknown command "nope"; run 'flux help' for the list`},
		{[]string{"demo", "--bogus"}, exitUsage, "flux demo: flag provided but not defined: -bogus"},
		{[]string{"demo", "extra"}, exitUsage, `flux demo: unexpected argument "extra"`},
		{[]string{"demo", "--help"}, exitOK, "Examples:"},
		{[]string{"demo", "--db", "/nonexistent-dir/x/y.db"}, exitError, "flux demo: "},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			m, out, errOut := testMain()
			code := m.Run(context.Background(), c.args)
			all := out.String() + errOut.String()
			if code != c.code || !strings.Contains(all, c.want) {
				t.Fatalf("exit %d, output %q; want exit %d and %q", code, all, c.code, c.want)
			}
			if code == exitError && strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errOut)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s (run go test -update after checking it).\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}
