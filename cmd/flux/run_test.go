package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testMain returns a Main with a fixed clock and predictable IDs.
func testMain() (*Main, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	n := 0
	return &Main{
		Stdout: &out,
		Stderr: &errOut,
		Clock:  func() time.Time { return time.Date(2026, 11, 25, 12, 34, 0, 0, time.UTC) },
		NewID: func() string {
			n++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
		},
		Getenv: func(string) string { return "" },
	}, &out, &errOut
}

func TestDemoOutput(t *testing.T) {
	m, out, errOut := testMain()
	db := filepath.Join(t.TempDir(), "demo.db")
	if code := m.Run(context.Background(), []string{"demo", "--db", db}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	want := `FluxCapacitor demo on the embedded SQLite store at ` + db + `

1. Ada signs up
   stored UserSignedUp as version 1 of 00000000-0000-4000-8000-000000000002 at 2026-11-24 12:00

2. Ada changes her first name to Augusta
   stored UserFirstnameChanged as version 2 of 00000000-0000-4000-8000-000000000002 at 2026-11-24 13:00

3. Ada marries and changes her last name to King
   stored UserLastnameChanged as version 3 of 00000000-0000-4000-8000-000000000002 at 2026-11-24 14:00

4. Load the user now, and as she was at 2026-11-24 13:30
   now:      Augusta King <ada@example.com>, version 3
   at 13:30: Augusta Byron <ada@example.com>, version 2

5. The stored events, from the global log
   POS  STREAM     VER  EVENT                    OCCURRED (UTC)    REQUEST        PAYLOAD
   1    00000000…  1    UserSignedUp v1          2026-11-24 12:00  demo-00000000  {"userId":"00000000-0000-4000-8000-000000000002","email":"ada@example.com","firstname":"Ada","lastname":"Byron","languagePreference":"en","isConsentGiven":true,"roles":["ROLE_USER"]}
   2    00000000…  2    UserFirstnameChanged v1  2026-11-24 13:00  demo-00000000  {"userId":"00000000-0000-4000-8000-000000000002","firstname":"Augusta"}
   3    00000000…  3    UserLastnameChanged v1   2026-11-24 14:00  demo-00000000  {"userId":"00000000-0000-4000-8000-000000000002","lastname":"King"}

The demo database is kept at ` + db + `.
`
	if got := out.String(); got != want {
		t.Fatalf("demo output differs.\n--- got ---\n%s\n--- want ---\n%s", got, want)
	}
}

func TestDemoWithoutDBUsesATemporaryFile(t *testing.T) {
	m, out, errOut := testMain()
	if code := m.Run(context.Background(), []string{"demo"}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if !strings.Contains(out.String(), "The demo database is removed now") {
		t.Fatalf("output: %s", out)
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
