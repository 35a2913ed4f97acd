package fluxcli

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// A payload damaged in the database does not stop `flux events --json`:
// every row is printed, the damaged one carries its position and the
// reason, and the command exits non-zero at the end.
func TestEventsJSONWithACorruptPayload(t *testing.T) {
	path := fixture(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	const corrupt = 3
	if _, err := db.Exec(`UPDATE events SET payload = '{"amount": 12' WHERE id = ?`, corrupt); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, withSecret := range []bool{false, true} {
		m, out, errOut := testMain()
		env := map[string]string{"FLUX_DSN": path}
		if withSecret {
			env["KEY_MANAGEMENT_SECRET"] = demoSecret
		}
		m.Getenv = func(k string) string { return env[k] }
		code := m.Run(context.Background(), []string{"events", "--json", "--limit", "5"})
		if code == 0 {
			t.Fatalf("secret %v: exit 0 with a corrupt payload; stderr: %s", withSecret, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 5 {
			t.Fatalf("secret %v: %d rows printed, want 5:\n%s\nstderr: %s", withSecret, len(lines), out, errOut)
		}
		for i, line := range lines {
			var row struct {
				Position int64           `json:"position"`
				Payload  json.RawMessage `json:"payload"`
				Error    string          `json:"error"`
			}
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatalf("secret %v: row %d is not JSON: %v\n%s", withSecret, i, err, line)
			}
			switch {
			case row.Position == corrupt && (!strings.Contains(row.Error, "position 3") || !strings.Contains(row.Error, "not JSON")):
				t.Errorf("secret %v: the corrupt row says %q, want its position and the reason", withSecret, row.Error)
			case row.Position != corrupt && row.Error != "":
				t.Errorf("secret %v: row at position %d has error %q", withSecret, row.Position, row.Error)
			}
		}
		if !strings.Contains(errOut.String(), "positions 3") {
			t.Errorf("secret %v: stderr %q does not name the position", withSecret, errOut)
		}
	}
}
