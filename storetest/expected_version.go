package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// testExpectedVersionMatrix pins every cell of the table in the
// flux.ExpectedVersion documentation: {Any, NoStream, StreamExists,
// exact n} × {absent stream, existing stream}, each in a single-stream
// append and as the second stream of a two-stream append (whose first
// stream must not be written when the second conflicts).
func testExpectedVersionMatrix(t *testing.T, h Harness) {
	s := h.New(t)
	// An existing stream is at version 2 before every case.
	cases := []struct {
		name     string
		existing bool
		expected flux.ExpectedVersion
		ok       bool
		actual   int64 // the version before the append
	}{
		{"any on absent stream appends from version 1", false, flux.Any, true, 0},
		{"no stream on absent stream appends from version 1", false, flux.NoStream, true, 0},
		{"stream exists on absent stream conflicts", false, flux.StreamExists, false, 0},
		{"exact 1 on absent stream conflicts", false, 1, false, 0},
		{"exact 3 on absent stream conflicts", false, 3, false, 0},
		{"any on existing stream appends after it", true, flux.Any, true, 2},
		{"no stream on existing stream conflicts", true, flux.NoStream, false, 2},
		{"stream exists on existing stream appends after it", true, flux.StreamExists, true, 2},
		{"exact current version appends after it", true, 2, true, 2},
		{"exact older version conflicts", true, 1, false, 2},
		{"exact newer version conflicts without leaving a gap", true, 5, false, 2},
	}
	for i, c := range cases {
		for _, multi := range []bool{false, true} {
			name := c.name
			if multi {
				name += " (second stream of two)"
			}
			t.Run(name, func(t *testing.T) {
				id := fmt.Sprintf("matrix-%d-%v", i, multi)
				other := id + "-other"
				if c.existing {
					mustAppend(t, s, stream(id, flux.NoStream, events(2, "Seeded")...))
				}
				// Two events, so backends that check the first event of an
				// append differently from the rest are held to the table.
				streams := []flux.StreamAppend{stream(id, c.expected, event("Tried", `{}`, base), event("Tried", `{}`, base))}
				if multi {
					streams = append([]flux.StreamAppend{stream(other, flux.NoStream, event("Other", `{}`, base))}, streams...)
				}
				res, err := s.Append(context.Background(), flux.AppendRequest{Streams: streams})
				recs := readStream(t, s, id, flux.ReadStreamOptions{})
				others := readStream(t, s, other, flux.ReadStreamOptions{})
				if c.ok {
					if err != nil {
						t.Fatalf("append expecting %v: %v", c.expected, err)
					}
					if got := res.Versions[len(res.Versions)-1]; got != c.actual+2 {
						t.Fatalf("append result version = %d, want %d", got, c.actual+2)
					}
					if int64(len(recs)) != c.actual+2 || recs[len(recs)-1].EventName != "Tried" || recs[len(recs)-1].StreamVersion != c.actual+2 {
						t.Fatalf("stream has %v, want version %d ending with Tried", names(recs), c.actual+2)
					}
					if multi && len(others) != 1 {
						t.Fatalf("first stream has %d events after a successful append, want 1", len(others))
					}
					return
				}
				wantConflict(t, err, id, c.expected, c.actual)
				if int64(len(recs)) != c.actual {
					t.Fatalf("stream has %d events after a conflict, want %d", len(recs), c.actual)
				}
				if len(others) != 0 {
					t.Fatalf("first stream has %d events after the second conflicted, want none", len(others))
				}
			})
		}
	}
}
