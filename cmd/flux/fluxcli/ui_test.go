package fluxcli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var consoleURLRE = regexp.MustCompile(`flux console on (http://\S+/)`)

func TestUIServesTheConsole(t *testing.T) {
	db := fixture(t)
	m, _, _ := testMain()
	var out, errOut syncBuffer
	m.Stdout, m.Stderr = &out, &errOut
	ctx, cancel := context.WithCancel(t.Context())
	code := make(chan int, 1)
	go func() { code <- m.Run(ctx, []string{"ui", "--dsn", db, "--addr", "127.0.0.1:0"}) }()
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; {
		if sm := consoleURLRE.FindStringSubmatch(out.String()); sm != nil {
			url = sm[1]
			break
		}
		select {
		case c := <-code:
			t.Fatalf("flux ui exited with %d: %s", c, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("flux ui printed no address")
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"streams?type=BudgetEnvelope", groceriesID},
		{"state?id=" + groceriesID + "&version=1", "BudgetEnvelope"},
		{"projections", "envelope-balances"},
	} {
		res, err := http.Get(url + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET /%s: %d, want %q:\n%.500s", tc.path, res.StatusCode, tc.want, body)
		}
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit code %d after Ctrl-C: %s", c, errOut.String())
	}
}

func TestUIRefusesUnsafeStarts(t *testing.T) {
	db := fixture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "0.0.0.0:0"}, "give a token"},
		{[]string{"--addr", ":0"}, "give a token"},
		{[]string{"--show-personal-data"}, "needs KEY_MANAGEMENT_SECRET"},
		{[]string{"--addr", "nonsense"}, "host:port"},
	} {
		m, _, errOut := testMain()
		if c := m.Run(t.Context(), append([]string{"ui", "--dsn", db}, tc.args...)); c != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("flux ui %v: exit %d, %q; want 2 with %q", tc.args, c, errOut.String(), tc.want)
		}
	}
}
