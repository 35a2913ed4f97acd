package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// nested returns a JSON document depth arrays deep.
func nested(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

// testJSONLimits: every backend refuses, before any I/O and with
// flux.ErrInvalidAppend naming the event, the valid JSON that some of them
// cannot store — nesting deeper than flux.MaxJSONDepth, an unpaired UTF-16
// surrogate escape — and stores what is just inside those limits.
func testJSONLimits(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	refused := []struct{ name, payload string }{
		{"nesting one level deeper than flux.MaxJSONDepth", nested(flux.MaxJSONDepth + 1)},
		{"objects nested too deep", strings.Repeat(`{"a":`, flux.MaxJSONDepth+1) + "1" + strings.Repeat("}", flux.MaxJSONDepth+1)},
		{"a lone high surrogate", `{"s":"\ud800"}`},
		{"a lone low surrogate", `{"s":"x\uDC00y"}`},
		{"a high surrogate followed by a non-surrogate escape", `["\ud800\u0041"]`},
		{"two high surrogates", `"\ud800\ud800"`},
	}
	for i, c := range refused {
		e := event("Odd", c.payload, base)
		_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("refused", flux.Any, e)}})
		if !errors.Is(err, flux.ErrInvalidAppend) || !strings.Contains(err.Error(), "Odd") {
			t.Errorf("%s: err = %v, want flux.ErrInvalidAppend naming the event", c.name, err)
		}
		_, err = s.Append(ctx, flux.AppendRequest{Snapshots: []flux.SnapshotWrite{{Snapshot: flux.Snapshot{
			StreamID: "refused", AggregateType: "Thing", Version: int64(i + 1), SchemaVersion: 1, Data: []byte(c.payload), CreatedAt: base}}}})
		if !errors.Is(err, flux.ErrInvalidAppend) {
			t.Errorf("%s in a snapshot: err = %v, want flux.ErrInvalidAppend", c.name, err)
		}
	}
	if got := readStream(t, s, "refused", flux.ReadStreamOptions{}); len(got) != 0 {
		t.Fatalf("%d refused events were stored", len(got))
	}
	accepted := []struct{ name, payload string }{
		{"nesting exactly flux.MaxJSONDepth deep", nested(flux.MaxJSONDepth)},
		{"a surrogate pair", `{"s":"\ud83d\ude80"}`},
		{"an escaped backslash before u", `{"s":"\\ud800"}`},
		{"brackets inside strings", `{"s":"` + strings.Repeat("[", 100) + `"}`},
	}
	for _, c := range accepted {
		if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("accepted", flux.Any, event("Fine", c.payload, base))}}); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	got := readStream(t, s, "accepted", flux.ReadStreamOptions{})
	if len(got) != len(accepted) {
		t.Fatalf("stored %d of %d accepted payloads", len(got), len(accepted))
	}
	for i, r := range got {
		if !jsonEqual(r.Payload, []byte(accepted[i].payload)) {
			t.Errorf("%s: read back %s", accepted[i].name, r.Payload)
		}
	}
}
