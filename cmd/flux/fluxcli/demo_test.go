package fluxcli

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemoPrintsATraceCommandPerStep runs every 'flux trace' command the
// demo prints: each one tells a story of at least one event, all of that
// correlation ID, and together they cover every event of the demo.
func TestDemoPrintsATraceCommandPerStep(t *testing.T) {
	m, out, errOut := testMain()
	db := filepath.Join(t.TempDir(), "demo.db")
	if code := m.Run(context.Background(), []string{"demo", "--db", db}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	cmds := regexp.MustCompile(`(?m)^   correlation ID (\S+): flux (trace \S+ --dsn \S+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(cmds) < 9 {
		t.Fatalf("%d trace commands in the demo's output, want one per step that stores events:\n%s", len(cmds), out)
	}
	total := 0
	for _, c := range cmds {
		m, out, errOut := testMain()
		if code := m.Run(context.Background(), append(strings.Fields(c[2]), "--json")); code != 0 {
			t.Fatalf("flux %s: exit %d, stderr: %s", c[2], code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		for _, l := range lines {
			if !strings.Contains(l, `"correlation_id":"`+c[1]+`"`) {
				t.Errorf("flux %s printed an event of another correlation: %s", c[2], l)
			}
		}
		total += len(lines)
	}
	// Events without a correlation ID (the SubjectForgotten record of a
	// Forget) are listed by request ID instead.
	reqs := regexp.MustCompile(`(?m)^   request ID (\S+) \(no correlation ID\): flux (events --request \S+ --dsn \S+)$`).FindAllStringSubmatch(out.String(), -1)
	for _, c := range reqs {
		m, out, errOut := testMain()
		if code := m.Run(context.Background(), append(strings.Fields(c[2]), "--json")); code != 0 {
			t.Fatalf("flux %s: exit %d, stderr: %s", c[2], code, errOut)
		}
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if strings.Contains(l, `"correlation_id":""`) {
				total++
			}
		}
	}
	m2, out2, _ := testMain()
	if code := m2.Run(context.Background(), []string{"events", "--dsn", db, "--json"}); code != 0 {
		t.Fatal("flux events failed")
	}
	if all := len(strings.Split(strings.TrimSpace(out2.String()), "\n")); total != all {
		t.Errorf("the printed trace and events commands cover %d events, the store holds %d", total, all)
	}
}

// TestDemoUsesKeyManagementSecret: with KEY_MANAGEMENT_SECRET set the demo
// encrypts under it (and says so), and the other commands read the
// personal data with the same secret only.
func TestDemoUsesKeyManagementSecret(t *testing.T) {
	const secret = "a-secret-of-my-own-32-bytes-long"
	env := func(k string) string {
		if k == "KEY_MANAGEMENT_SECRET" {
			return secret
		}
		return ""
	}
	m, out, errOut := testMain()
	m.Getenv = env
	db := filepath.Join(t.TempDir(), "demo.db")
	if code := m.Run(context.Background(), []string{"demo", "--db", db}); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if !strings.Contains(out.String(), "Personal data is encrypted under the secret in KEY_MANAGEMENT_SECRET.") ||
		strings.Contains(out.String(), demoSecret) {
		t.Errorf("the demo does not say it used KEY_MANAGEMENT_SECRET:\n%s", out)
	}

	m, out, _ = testMain()
	m.Getenv = env
	if code := m.Run(context.Background(), []string{"state", "User", bobID, "--dsn", db}); code != 0 || !strings.Contains(out.String(), "bob@example.com") {
		t.Errorf("flux state with the demo's secret: exit %d, output %s", code, out)
	}
	m, out, _ = testMain()
	m.Getenv = func(k string) string { return map[string]string{"KEY_MANAGEMENT_SECRET": demoSecret}[k] }
	if code := m.Run(context.Background(), []string{"state", "User", bobID, "--dsn", db}); code == 0 || strings.Contains(out.String(), "bob@example.com") {
		t.Errorf("flux state with the built-in secret instead: exit %d, output %s", code, out)
	}
}
