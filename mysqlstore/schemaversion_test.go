package mysqlstore_test

import (
	"testing"

	"github.com/fluxcapacitor/flux/mysqlstore"
)

func TestSchemaVersionReadsWithoutMigrating(t *testing.T) {
	s := openTemp(t, &mysqlstore.Options{SkipMigrate: true})
	current, latest, err := s.SchemaVersion(t.Context())
	if err != nil || current != 0 || latest < 2 {
		t.Fatalf("before Migrate: %d, %d, %v", current, latest, err)
	}
	var n int
	if err := s.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("SchemaVersion created %d tables (%v)", n, err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if current, latest, err = s.SchemaVersion(t.Context()); err != nil || current != latest {
		t.Fatalf("after Migrate: %d, %d, %v", current, latest, err)
	}
}
