package mysqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/internal/uuid"
)

func TestZZDebugAppend(t *testing.T) {
	dsn := NewTestDatabase(t)
	s, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var ids uuid.Generator
	modes := []string{"nostream", "exact", "raw", "raw-head", "raw-head-explicit"}
	tot := map[string]time.Duration{}
	stages := map[string][5]time.Duration{}
	const n = 1000
	for i := 0; i < n; i++ {
		for _, mode := range modes {
			var err error
			exp := flux.ExpectedVersion(i)
			stream := "s-" + mode
			switch mode {
			case "nostream":
				exp = flux.NoStream
				stream = fmt.Sprintf("%s-%d", mode, i)
			case "any":
				exp = flux.Any
			case "exact-many":
				exp = flux.NoStream
				stream = fmt.Sprintf("many-%d", i%50)
				if i >= 50 {
					exp = flux.ExpectedVersion(i / 50)
				}
			}
			if mode[:3] == "raw" {
				t0 := time.Now()
				tx, _ := s.db.Begin()
				t1 := time.Now()
				var head int64
				if mode != "raw" {
					r, _ := tx.Exec(`UPDATE flux_log_head SET position = LAST_INSERT_ID(position + 1) WHERE id = 1`)
					head, _ = r.LastInsertId()
				}
				t2 := time.Now()
				id := ids.New()
				if mode == "raw-head-explicit" {
					_, err = tx.Exec("INSERT INTO events "+insertColumns+" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", head, id, "s-"+mode, "T", "E", 1, []byte(`{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`), nil, formatTime(time.Now()), "r", id, "", i+1)
				} else {
					_, err = tx.Exec("INSERT INTO events (event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", id, "s-"+mode, "T", "E", 1, `{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`, nil, formatTime(time.Now()), "r", id, "", i+1)
				}
				if err != nil {
					t.Fatal(err)
				}
				t3 := time.Now()
				tx.Commit()
				t4 := time.Now()
				tot[mode] += t4.Sub(t0)
				st := stages[mode]
				st[0] += t1.Sub(t0)
				st[1] += t2.Sub(t1)
				st[3] += t3.Sub(t2)
				st[4] += t4.Sub(t3)
				stages[mode] = st
				continue
			}
			DbgTimes = [5]time.Duration{}
			t0 := time.Now()
			_, err = s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: stream, AggregateType: "T", Expected: exp,
				Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`), OccurredAt: time.Now()}}}}})
			if err != nil {
				t.Fatal(err)
			}
			tot[mode] += time.Since(t0)
			st := stages[mode]
			for k := range st {
				st[k] += DbgTimes[k]
			}
			stages[mode] = st
		}
	}
	for _, mode := range modes {
		st := stages[mode]
		fmt.Println(mode, tot[mode]/n, st[0]/n, st[1]/n, st[2]/n, st[3]/n, st[4]/n)
	}
}
