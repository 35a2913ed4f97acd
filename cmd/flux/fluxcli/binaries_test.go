package fluxcli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinaries builds the stock flux and the budget example's own flux
// (examples/budgetflux, the few lines of docs/cli.md) and runs them on a
// store the demo filled: the stock one reads it without the registry and
// says that state needs one; the application's knows its types.
func TestBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	stock, app := filepath.Join(dir, "flux"), filepath.Join(dir, "budgetflux")
	for bin, pkg := range map[string]string{stock: "..", app: "../examples/budgetflux"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	db := filepath.Join(dir, "flux.db")
	run := func(bin string, wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "FLUX_DSN="+db, "KEY_MANAGEMENT_SECRET="+demoSecret)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(stock, true, "demo", "--db", db)

	var user struct {
		StreamID string `json:"stream_id"`
	}
	streams := run(stock, true, "streams", "--type", "User", "--json")
	if err := json.Unmarshal([]byte(strings.SplitN(streams, "\n", 2)[0]), &user); err != nil || user.StreamID == "" {
		t.Fatalf("streams: %v\n%s", err, streams)
	}
	if out := run(stock, false, "state", "User", user.StreamID); !strings.Contains(out, "need the application's registry") {
		t.Fatalf("stock flux state: %s", out)
	}
	if out := run(app, true, "state", "User", user.StreamID); !strings.Contains(out, "User "+user.StreamID+" at version") {
		t.Fatalf("budgetflux state: %s", out)
	}
	if out := run(app, true, "events", "--stream", user.StreamID, "--full"); strings.Contains(out, "[encrypted]") {
		t.Fatalf("budgetflux events do not decrypt personal data: %s", out)
	}
	if out := run(app, true, "projections", "rebuild", "envelope-balances"); !strings.Contains(out, "rebuilt envelope-balances") {
		t.Fatalf("budgetflux projections rebuild: %s", out)
	}
	if out := run(stock, true, "version", "--json"); !strings.Contains(out, `"path":"github.com/fluxcapacitor/flux"`) {
		t.Fatalf("flux version --json lists no core module: %s", out)
	}
}
