package fluxcli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fluxcapacitor/flux/sqlitestore"
)

func runMigrate(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("migrate [--dsn DSN]", "Creates the event store's tables and indexes, or upgrades them to this\nversion's schema. Safe to run twice. Upgrading a SQLite store written\nbefore schema version 3 rewrites the rows whose JSON was stored as BLOB\nas TEXT, in one transaction.", "  flux migrate\n  flux migrate --dsn postgres://app@db:5432/events")
	c := addCommon(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	return m.withBackend(ctx, *c.dsn, create, func(b *Backend) error {
		if mg, ok := b.store.(interface{ Migrate(context.Context) error }); ok {
			if err := mg.Migrate(ctx); err != nil {
				return err
			}
		}
		// The SQLite store migrates when it opens: it reports what it did.
		if mr, ok := b.store.(interface{ Migrated() sqlitestore.Migration }); ok {
			if mig := mr.Migrated(); mig.From != mig.To {
				return reportUpgrade(m, *c.json, b, mig)
			}
		}
		return m.report(*c.json, map[string]any{"backend": b.kind, "store": b.where, "schema": "up to date"},
			"%s event store at %s: schema is up to date", b.kind, b.where)
	})
}

// reportUpgrade says which schema versions a SQLite store went through and
// how many JSON values became TEXT, per table and column.
func reportUpgrade(m *Main, asJSON bool, b *Backend, mig sqlitestore.Migration) error {
	if mig.From == 0 {
		return m.report(asJSON, map[string]any{"backend": b.kind, "store": b.where, "schema": "created", "to_version": mig.To},
			"%s event store at %s: created at schema version %d", b.kind, b.where, mig.To)
	}
	converted := mig.Converted
	if converted == nil {
		converted = map[string]int64{}
	}
	var parts []string
	for _, col := range slices.Sorted(maps.Keys(converted)) {
		parts = append(parts, fmt.Sprintf("%d in %s", converted[col], col))
	}
	conv := "no JSON was stored as BLOB"
	if len(parts) > 0 {
		conv = "JSON values converted from BLOB to TEXT: " + strings.Join(parts, ", ")
	}
	return m.report(asJSON, map[string]any{"backend": b.kind, "store": b.where, "schema": "upgraded",
		"from_version": mig.From, "to_version": mig.To, "converted": converted},
		"%s event store at %s: schema upgraded from version %d to %d; %s", b.kind, b.where, mig.From, mig.To, conv)
}
