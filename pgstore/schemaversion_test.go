package pgstore_test

import (
	"testing"

	"github.com/fluxcapacitor/flux/pgstore"
)

func TestSchemaVersionReadsWithoutMigrating(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	s := openOn(t, dsn, &pgstore.Options{Schema: schema, SkipMigrate: true})
	current, latest, err := s.SchemaVersion(t.Context())
	if err != nil || current != 0 || latest < 3 {
		t.Fatalf("before Migrate: %d, %d, %v", current, latest, err)
	}
	var exists bool
	if err := s.Pool().QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil || exists {
		t.Fatalf("SchemaVersion created the schema (%v, %v)", exists, err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if current, latest, err = s.SchemaVersion(t.Context()); err != nil || current != latest {
		t.Fatalf("after Migrate: %d, %d, %v", current, latest, err)
	}
}
