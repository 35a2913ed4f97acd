// Command schema2gen writes testdata/schema2.db, a database at schema
// version 2 as FluxCapacitor wrote it before payloads were bound as TEXT
// (event payloads and idempotency results were stored as BLOBs), and
// testdata/schema2.golden.json, what that version read back from it.
// TestMigrateSchema2Fixture migrates a copy and compares.
//
// The fixture was made with the store of commit bc1d311 (schema version
// 2). To make it again, copy this directory into a worktree of that commit
// and run, from its sqlitestore directory:
//
//	go run ./testdata/schema2gen
//
// Run against a later store it would write TEXT rows and prove nothing.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// Golden is what the writing version read back; the test decodes the same
// shape.
type Golden struct {
	Records     []flux.Record
	Snapshots   []flux.Snapshot
	Idempotency []flux.IdempotencyRecord
	Keys        []pii.StoredKey
	Forgotten   []pii.Forgetting
	Checkpoints []projection.Checkpoint
}

const (
	dbPath     = "testdata/schema2.db"
	goldenPath = "testdata/schema2.golden.json"
)

func main() {
	ctx := context.Background()
	for _, p := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
		os.Remove(p)
	}
	s, err := sqlitestore.Open(ctx, dbPath, nil)
	must(err)
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456000, time.UTC)
	n := 0
	eventID := func() string {
		n++
		return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	}
	big := `{"note":"` + strings.Repeat("x", 20000) + `"}`
	payloads := []string{
		`{"amount":100,"currency":"EUR"}`,
		`{"name":"Zoë Ñúñez","city":"Kraków","emoji":"🚀","cjk":"東京"}`,
		`{"escaped":"quote \" backslash \\ newline \n tab \t nul \u0000 sep \u2028","surrogate":"\ud83d\ude80"}`,
		`{"nested":{"list":[1,2.5,-3e10,true,false,null],"empty":{},"none":[]}}`,
		`  {"spaced" : 1 ,  "keys":"keep their order and spaces"}  `,
		`[1,2,3]`,
		`"a bare string"`,
		`42`,
		`null`,
		big,
	}
	for i, p := range payloads {
		ev := flux.EventData{EventID: eventID(), EventName: "Shape" + fmt.Sprint(i), EventVersion: 1 + i%3,
			Payload: []byte(p), OccurredAt: at.Add(time.Duration(i) * time.Second),
			Metadata: flux.Metadata{RequestID: fmt.Sprintf("req-%d", i), CorrelationID: "corr", CausationID: "cause"}}
		if i%2 == 0 {
			ev.Metadata.Extra = map[string]string{"tenant": "acme", "ünïcode": "✓"}
		}
		var idem *flux.IdempotencyRecord
		switch i {
		case 0:
			idem = &flux.IdempotencyRecord{Key: "cmd-object", Result: []byte(`{"id":"acc-1","balance":100}`), CreatedAt: at}
		case 1:
			idem = &flux.IdempotencyRecord{Key: "cmd-null", Result: []byte(`null`), CreatedAt: at}
		case 2:
			idem = &flux.IdempotencyRecord{Key: "cmd-empty", Result: []byte{}, CreatedAt: at}
		case 3:
			idem = &flux.IdempotencyRecord{Key: "cmd-unicode", Result: []byte(`"Zoë 🚀"`), CreatedAt: at}
		}
		_, err := s.Append(ctx, flux.AppendRequest{Idempotency: idem, Streams: []flux.StreamAppend{{
			StreamID: fmt.Sprintf("shape-%d", i), AggregateType: "Shape", Expected: flux.NoStream,
			Events: []flux.EventData{ev},
		}}})
		must(err)
	}
	// One account with many events and snapshots (one pruned).
	for v := 1; v <= 30; v++ {
		req := flux.AppendRequest{Streams: []flux.StreamAppend{{
			StreamID: "acc-1", AggregateType: "Account", Expected: flux.ExpectedVersion(v - 1),
			Events: []flux.EventData{{EventID: eventID(), EventName: "Deposited", EventVersion: 1,
				Payload:    []byte(fmt.Sprintf(`{"amount":%d,"memo":"dépôt n°%d"}`, v, v)),
				OccurredAt: at.Add(time.Duration(v) * time.Minute)}},
		}}}
		if v%10 == 0 {
			req.Snapshots = []flux.SnapshotWrite{{Keep: 2, Snapshot: flux.Snapshot{
				StreamID: "acc-1", AggregateType: "Account", Version: int64(v), SchemaVersion: 1,
				Data:      []byte(fmt.Sprintf(`{"balance":%d,"owner":"Zoë"}`, v*(v+1)/2)),
				CreatedAt: at.Add(time.Duration(v) * time.Minute)}}}
		}
		_, err := s.Append(ctx, req)
		must(err)
	}
	_, err = s.Append(ctx, flux.AppendRequest{
		Streams: []flux.StreamAppend{{StreamID: "acc-2", AggregateType: "Account", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: eventID(), EventName: "Opened", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: at}}}},
		Snapshots: []flux.SnapshotWrite{{Snapshot: flux.Snapshot{StreamID: "acc-2", AggregateType: "Account", Version: 1, SchemaVersion: 2,
			Data: []byte(`{"balance":0,"escaped":"\u0000\"\\"}`), CreatedAt: at}}},
	})
	must(err)
	for _, sub := range []string{"user-1", "user-2"} {
		_, err := s.CreateKey(ctx, pii.StoredKey{Subject: sub, Wrapped: "v1.wrapped." + sub, CreatedAt: at, UpdatedAt: at})
		must(err)
	}
	must(s.ForgetSubject(ctx, pii.Forgetting{Subject: "user-2", At: at, By: "ops", Reason: "request 42"}))
	// A read model beside the events, with a BLOB column the migration
	// must leave alone.
	must(s.ProjectTx(ctx, 0, projection.Checkpoint{Name: "balances", Position: 5, UpdatedAt: at}, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, raw BLOB)`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO balances VALUES ('acc-1', 465, ?)`, []byte(`{"kept":"as a blob"}`))
		return err
	}))
	must(s.SaveCheckpoint(ctx, projection.Checkpoint{Name: "relay", Position: 12, UpdatedAt: at}))

	var g Golden
	for r, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		must(err)
		g.Records = append(g.Records, r)
	}
	for _, id := range []string{"acc-1", "acc-2"} {
		for _, sv := range []int{1, 2} {
			for _, max := range []int64{0, 20} {
				sn, ok, err := s.LoadSnapshot(ctx, id, flux.SnapshotQuery{SchemaVersion: sv, MaxVersion: max})
				must(err)
				if ok {
					g.Snapshots = append(g.Snapshots, sn)
				}
			}
		}
	}
	for _, k := range []string{"cmd-object", "cmd-null", "cmd-empty", "cmd-unicode"} {
		rec, ok, err := s.LookupIdempotency(ctx, k)
		must(err)
		if !ok {
			log.Fatalf("idempotency key %s not found", k)
		}
		g.Idempotency = append(g.Idempotency, rec)
	}
	k, err := s.LoadKey(ctx, "user-1")
	must(err)
	g.Keys = append(g.Keys, k)
	f, _, err := s.Forgotten(ctx, "user-2")
	must(err)
	g.Forgotten = append(g.Forgotten, f)
	g.Checkpoints, err = s.ListCheckpoints(ctx)
	must(err)
	must(s.Close())

	out, err := json.MarshalIndent(g, "", "\t")
	must(err)
	must(os.WriteFile(goldenPath, append(out, '\n'), 0o644))
	fmt.Printf("wrote %s and %s: %d events, %d snapshots, %d idempotency records\n",
		dbPath, goldenPath, len(g.Records), len(g.Snapshots), len(g.Idempotency))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
