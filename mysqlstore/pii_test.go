package mysqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/pii/piitest"
)

func TestNoPersonalDataInClear(t *testing.T) {
	piitest.Run(t, piitest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
		Dump: func(t *testing.T, es flux.EventStore) []byte {
			return dumpDatabase(t, es.(*mysqlstore.Store).DB())
		},
	})
}

// dumpDatabase returns every row of every table of the store's database.
func dumpDatabase(t *testing.T, db *sql.DB) []byte {
	t.Helper()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 6 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	var b strings.Builder
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, "SELECT * FROM `"+table+"`")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s:", table)
			for _, v := range vals {
				fmt.Fprintf(&b, " %s", v)
			}
			b.WriteByte('\n')
		}
		rows.Close()
	}
	return []byte(b.String())
}
