package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/uuid"
)

var ids uuid.Generator

// base is a fixed, microsecond-aligned instant used for deterministic times.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func event(name, payload string, at time.Time) flux.EventData {
	return flux.EventData{
		EventID:      ids.New(),
		EventName:    name,
		EventVersion: 1,
		Payload:      []byte(payload),
		Metadata:     flux.Metadata{RequestID: flux.DefaultRequestID, CorrelationID: "corr-1"},
		OccurredAt:   at,
	}
}

func events(n int, name string) []flux.EventData {
	out := make([]flux.EventData, n)
	for i := range out {
		out[i] = event(name, fmt.Sprintf(`{"n":%d}`, i), base.Add(time.Duration(i)*time.Second))
	}
	return out
}

func stream(id string, exp flux.ExpectedVersion, evs ...flux.EventData) flux.StreamAppend {
	return flux.StreamAppend{StreamID: id, AggregateType: "Thing", Expected: exp, Events: evs}
}

func mustAppend(t testing.TB, s flux.EventStore, streams ...flux.StreamAppend) flux.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), flux.AppendRequest{Streams: streams})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

func readStream(t testing.TB, s flux.EventStore, id string, opts flux.ReadStreamOptions) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadStream(context.Background(), id, opts) {
		if err != nil {
			t.Fatalf("read stream %q: %v", id, err)
		}
		out = append(out, r)
	}
	return out
}

func readAll(t testing.TB, s flux.EventStore, opts flux.ReadAllOptions) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadAll(context.Background(), opts) {
		if err != nil {
			t.Fatalf("read all: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// jsonEqual compares two JSON documents by value: backends may normalise
// whitespace and key order (PostgreSQL JSONB does).
func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func wantConflict(t testing.TB, err error, streamID string, expected flux.ExpectedVersion, actual int64) {
	t.Helper()
	if !errors.Is(err, flux.ErrConcurrencyConflict) {
		t.Fatalf("err = %v, want a concurrency conflict on %q", err, streamID)
	}
	var ce *flux.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T %v, want *flux.ConflictError", err, err)
	}
	if ce.StreamID != streamID || ce.Expected != expected || ce.Actual != actual {
		t.Fatalf("conflict = {stream %q expected %v actual %d}, want {stream %q expected %v actual %d}",
			ce.StreamID, ce.Expected, ce.Actual, streamID, expected, actual)
	}
}

func versions(recs []flux.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.StreamVersion
	}
	return out
}

func positions(recs []flux.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func names(recs []flux.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.EventName
	}
	return out
}

func streamIDs(recs []flux.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.StreamID
	}
	return out
}

func equal[T comparable](t testing.TB, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
}

func increasing(t testing.TB, what string, ps []int64) {
	t.Helper()
	for i := 1; i < len(ps); i++ {
		if ps[i] <= ps[i-1] {
			t.Fatalf("%s not strictly increasing at %d: %d after %d", what, i, ps[i], ps[i-1])
		}
	}
}
