package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
)

func testRoundTrip(t *testing.T, h Harness) {
	s := h.New(t)
	a1 := event("Opened", `{"owner":"ann","limit":100}`, base)
	a1.Metadata = flux.Metadata{
		RequestID:     "req-1",
		CorrelationID: "corr-1",
		CausationID:   "cmd-1",
		Extra:         map[string]string{"tenant": "acme", "traceparent": "00-abc-def-01"},
	}
	a2 := event("Credited", `{"amount":25}`, base.Add(1500*time.Microsecond))
	b1 := event("Opened", `{"owner":"bob"}`, base.Add(time.Hour))

	res := mustAppend(t, s, stream("acc-a", flux.NoStream, a1, a2), stream("acc-b", flux.Any, b1))
	equal(t, "append versions", res.Versions, []int64{2, 1})
	if len(res.Positions) != 3 {
		t.Fatalf("append positions = %v, want 3", res.Positions)
	}
	increasing(t, "append positions", res.Positions)

	got := readStream(t, s, "acc-a", flux.ReadStreamOptions{})
	if len(got) != 2 {
		t.Fatalf("read acc-a: %d records, want 2", len(got))
	}
	for i, want := range []flux.EventData{a1, a2} {
		r := got[i]
		if r.Position != res.Positions[i] || r.StreamID != "acc-a" || r.StreamVersion != int64(i+1) ||
			r.AggregateType != "Thing" || r.EventID != want.EventID || r.EventName != want.EventName ||
			r.EventVersion != 1 {
			t.Fatalf("record %d = %+v, want position %d, version %d, event %s %s", i, r, res.Positions[i], i+1, want.EventName, want.EventID)
		}
		if !jsonEqual(r.Payload, want.Payload) {
			t.Fatalf("record %d payload = %s, want %s", i, r.Payload, want.Payload)
		}
		if !r.OccurredAt.Equal(want.OccurredAt) || r.OccurredAt.Location() != time.UTC {
			t.Fatalf("record %d occurred at %v, want %v in UTC", i, r.OccurredAt, want.OccurredAt)
		}
		m := r.Metadata
		if m.RequestID != want.Metadata.RequestID || m.CorrelationID != want.Metadata.CorrelationID ||
			m.CausationID != want.Metadata.CausationID || len(m.Extra) != len(want.Metadata.Extra) {
			t.Fatalf("record %d metadata = %+v, want %+v", i, m, want.Metadata)
		}
		for k, v := range want.Metadata.Extra {
			if m.Extra[k] != v {
				t.Fatalf("record %d metadata extra %q = %q, want %q", i, k, m.Extra[k], v)
			}
		}
	}
	if len(got[1].Metadata.Extra) != 0 {
		t.Fatalf("record without extra metadata came back with %v", got[1].Metadata.Extra)
	}

	all := readAll(t, s, flux.ReadAllOptions{})
	equal(t, "global log streams", streamIDs(all), []string{"acc-a", "acc-a", "acc-b"})
	equal(t, "global log positions", positions(all), res.Positions)

	if recs := readStream(t, s, "nobody", flux.ReadStreamOptions{}); len(recs) != 0 {
		t.Fatalf("absent stream yielded %d records", len(recs))
	}

	// Times are stored at microsecond precision in UTC (later than the
	// log's last time, so kept as given).
	local := time.FixedZone("UTC+2", 2*3600)
	c := event("Opened", `{}`, base.Add(2*time.Hour+123456789*time.Nanosecond).In(local))
	mustAppend(t, s, stream("acc-c", flux.NoStream, c))
	rc := readStream(t, s, "acc-c", flux.ReadStreamOptions{})
	if want := flux.NormalizeTime(c.OccurredAt); !rc[0].OccurredAt.Equal(want) || rc[0].OccurredAt.Location() != time.UTC {
		t.Fatalf("occurred at %v, want %v (UTC, microseconds)", rc[0].OccurredAt, want)
	}
}

func testAtomicMultiStream(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("b", flux.NoStream, events(3, "Seeded")...))
	before := readAll(t, s, flux.ReadAllOptions{})

	_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{
		stream("a", flux.NoStream, events(2, "New")...),
		stream("b", 1, event("Late", `{}`, base)), // b is at 3
		stream("c", flux.Any, event("New", `{}`, base)),
	}})
	wantConflict(t, err, "b", 1, 3)
	for _, id := range []string{"a", "c"} {
		if recs := readStream(t, s, id, flux.ReadStreamOptions{}); len(recs) != 0 {
			t.Fatalf("stream %q has %d events after a failed multi-stream append", id, len(recs))
		}
	}
	after := readAll(t, s, flux.ReadAllOptions{})
	equal(t, "global log after failed append", positions(after), positions(before))

	// The same streams succeed together once the expectation is right, and
	// the failed attempt left no hole in the versions.
	res := mustAppend(t, s,
		stream("a", flux.NoStream, events(2, "New")...),
		stream("b", 3, event("OnTime", `{}`, base)),
	)
	equal(t, "versions", res.Versions, []int64{2, 4})
	equal(t, "stream b versions", versions(readStream(t, s, "b", flux.ReadStreamOptions{})), []int64{1, 2, 3, 4})
}

func testInvalidInput(t *testing.T, h Harness) {
	s := h.New(t)
	// A cancelled context proves validation happens before any I/O: a
	// backend that went to the database first would report the cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	big := make([]byte, h.maxEventSize()+1)
	copy(big, `"`)
	for i := 1; i < len(big)-1; i++ {
		big[i] = 'x'
	}
	big[len(big)-1] = '"'
	badID := event("E", `{}`, base)
	badID.EventID = "not-a-uuid"
	noName := event("", `{}`, base)
	zeroTime := event("E", `{}`, time.Time{})
	longRequest := event("E", `{}`, base)
	longRequest.Metadata.RequestID = strings.Repeat("r", 256)
	nulMeta := event("E", `{}`, base)
	nulMeta.Metadata.Extra = map[string]string{"k": "a\x00b"}
	cases := []struct {
		name string
		req  flux.AppendRequest
		want error
	}{
		{"empty stream ID", flux.AppendRequest{Streams: []flux.StreamAppend{stream("", flux.Any, event("E", `{}`, base))}}, flux.ErrInvalidStreamID},
		{"stream ID over 255 bytes", flux.AppendRequest{Streams: []flux.StreamAppend{stream(strings.Repeat("x", 256), flux.Any, event("E", `{}`, base))}}, flux.ErrInvalidStreamID},
		{"stream ID with invalid UTF-8", flux.AppendRequest{Streams: []flux.StreamAppend{stream("a\xffb", flux.Any, event("E", `{}`, base))}}, flux.ErrInvalidStreamID},
		{"stream ID with a NUL byte", flux.AppendRequest{Streams: []flux.StreamAppend{stream("a\x00b", flux.Any, event("E", `{}`, base))}}, flux.ErrInvalidStreamID},
		{"oversized event", flux.AppendRequest{Streams: []flux.StreamAppend{stream("ok", flux.Any, event("Big", string(big), base))}}, flux.ErrEventTooLarge},
		{"oversized event in the second stream", flux.AppendRequest{Streams: []flux.StreamAppend{
			stream("ok", flux.Any, event("E", `{}`, base)),
			stream("ok2", flux.Any, event("Big", string(big), base)),
		}}, flux.ErrEventTooLarge},
		{"stream listed twice", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, event("E", `{}`, base)), stream("d", flux.Any, event("E", `{}`, base))}}, flux.ErrInvalidAppend},
		{"stream without events", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any)}}, flux.ErrInvalidAppend},
		{"event ID not a UUID", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, badID)}}, flux.ErrInvalidAppend},
		{"empty event name", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, noName)}}, flux.ErrInvalidAppend},
		{"payload not JSON", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, event("E", `{"a":`, base))}}, flux.ErrInvalidAppend},
		{"zero occurred-at", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, zeroTime)}}, flux.ErrInvalidAppend},
		{"payload with invalid UTF-8 in a string", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, event("E", "{\"a\":\"\xff\"}", base))}}, flux.ErrInvalidAppend},
		{"request ID over 255 bytes", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, longRequest)}}, flux.ErrInvalidAppend},
		{"event name with a NUL", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, event("E\x00", `{}`, base))}}, flux.ErrInvalidAppend},
		{"metadata with a NUL", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", flux.Any, nulMeta)}}, flux.ErrInvalidAppend},
		{"expected version below stream exists", flux.AppendRequest{Streams: []flux.StreamAppend{stream("d", -3, event("E", `{}`, base))}}, flux.ErrInvalidAppend},
		{"empty aggregate type", flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "d", Expected: flux.Any, Events: []flux.EventData{event("E", `{}`, base)}}}}, flux.ErrInvalidAppend},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Append(ctx, c.req)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	var tooLarge *flux.EventTooLargeError
	_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("ok", flux.Any, event("Big", string(big), base))}})
	if !errors.As(err, &tooLarge) || tooLarge.StreamID != "ok" || tooLarge.EventName != "Big" || tooLarge.Size != len(big) || tooLarge.Limit != h.maxEventSize() {
		t.Fatalf("err = %#v, want *flux.EventTooLargeError for stream ok, event Big, size %d, limit %d", err, len(big), h.maxEventSize())
	}
	if recs := readAll(t, s, flux.ReadAllOptions{}); len(recs) != 0 {
		t.Fatalf("rejected appends wrote %d records", len(recs))
	}
	// An event right at the limit is accepted.
	atLimit := big[:h.maxEventSize()]
	atLimit[len(atLimit)-1] = '"'
	mustAppend(t, s, stream("ok", flux.NoStream, event("Big", string(atLimit), base)))
}

func testUnicodeAndLarge(t *testing.T, h Harness) {
	s := h.New(t)
	unicodePayload := `{"name":"Zoë Ångström 山田太郎 🚀","note":"e\u0301 combining, \"quotes\", back\\slash, tab\t, NUL escape \u0000, RTL שלום","emoji":"👩‍👩‍👧‍👦"}`
	streamID := "用户-ü-🚀-1"
	mustAppend(t, s, stream(streamID, flux.NoStream, event("Ünïcode·Event", unicodePayload, base)))
	recs := readStream(t, s, streamID, flux.ReadStreamOptions{})
	if len(recs) != 1 || recs[0].StreamID != streamID || recs[0].EventName != "Ünïcode·Event" || !jsonEqual(recs[0].Payload, []byte(unicodePayload)) {
		t.Fatalf("unicode round trip = %+v", recs)
	}

	// 1 MiB payload.
	var sb strings.Builder
	sb.WriteString(`{"blob":"`)
	for sb.Len() < 1<<20 {
		sb.WriteString("0123456789abcdef€")
	}
	sb.WriteString(`"}`)
	large := sb.String()
	mustAppend(t, s, stream("large", flux.NoStream, event("Large", large, base), event("Small", `{}`, base)))
	recs = readStream(t, s, "large", flux.ReadStreamOptions{})
	if len(recs) != 2 || !jsonEqual(recs[0].Payload, []byte(large)) {
		t.Fatalf("1 MiB payload did not round trip (got %d records)", len(recs))
	}
}

func testReadStreamFilters(t *testing.T, h Harness) {
	s := h.New(t)
	var evs []flux.EventData
	for i := 0; i < 10; i++ {
		name := "Credited"
		if i%3 == 0 {
			name = "Debited"
		}
		evs = append(evs, event(name, fmt.Sprintf(`{"i":%d}`, i), base.Add(time.Duration(i)*time.Minute)))
	}
	mustAppend(t, s, stream("acc", flux.NoStream, evs...))
	mustAppend(t, s, stream("other", flux.NoStream, events(3, "Credited")...))

	cases := []struct {
		name string
		opts flux.ReadStreamOptions
		want []int64
	}{
		{"everything", flux.ReadStreamOptions{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"from version", flux.ReadStreamOptions{FromVersion: 8}, []int64{8, 9, 10}},
		{"to version", flux.ReadStreamOptions{ToVersion: 3}, []int64{1, 2, 3}},
		{"version window", flux.ReadStreamOptions{FromVersion: 4, ToVersion: 6}, []int64{4, 5, 6}},
		{"since a time, inclusive", flux.ReadStreamOptions{Since: base.Add(7 * time.Minute)}, []int64{8, 9, 10}},
		{"until a time, inclusive", flux.ReadStreamOptions{Until: base.Add(2 * time.Minute)}, []int64{1, 2, 3}},
		{"by event name", flux.ReadStreamOptions{EventNames: []string{"Debited"}}, []int64{1, 4, 7, 10}},
		{"by several event names", flux.ReadStreamOptions{EventNames: []string{"Debited", "Credited"}}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"by event name since a time", flux.ReadStreamOptions{EventNames: []string{"Debited"}, Since: base.Add(4 * time.Minute)}, []int64{7, 10}},
		{"by unknown event name", flux.ReadStreamOptions{EventNames: []string{"Closed"}}, nil},
		{"beyond the end", flux.ReadStreamOptions{FromVersion: 11}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			equal(t, "versions", versions(readStream(t, s, "acc", c.opts)), c.want)
		})
	}
}

func testReadAllFilters(t *testing.T, h Harness) {
	s := h.New(t)
	mk := func(name, corr, req string, at time.Time) flux.EventData {
		e := event(name, `{}`, at)
		e.Metadata = flux.Metadata{CorrelationID: corr, RequestID: req}
		return e
	}
	mustAppend(t, s, flux.StreamAppend{StreamID: "u1", AggregateType: "User", Expected: flux.NoStream, Events: []flux.EventData{
		mk("UserRegistered", "c1", "r1", base),
		mk("UserRenamed", "c2", "r2", base.Add(time.Minute)),
	}})
	mustAppend(t, s, flux.StreamAppend{StreamID: "e1", AggregateType: "Envelope", Expected: flux.NoStream, Events: []flux.EventData{
		mk("EnvelopeCreated", "c1", "r1", base.Add(2*time.Minute)),
		mk("EnvelopeCredited", "c3", "r3", base.Add(3*time.Minute)),
	}})
	mustAppend(t, s, flux.StreamAppend{StreamID: "u2", AggregateType: "User", Expected: flux.NoStream, Events: []flux.EventData{
		mk("UserRegistered", "c4", "r1", base.Add(4*time.Minute)),
	}})
	all := readAll(t, s, flux.ReadAllOptions{})
	if len(all) != 5 {
		t.Fatalf("log has %d records, want 5", len(all))
	}
	increasing(t, "positions", positions(all))
	p := positions(all)

	cases := []struct {
		name string
		opts flux.ReadAllOptions
		want []int64
	}{
		{"after a position", flux.ReadAllOptions{After: p[2]}, p[3:]},
		{"after the last position", flux.ReadAllOptions{After: p[4]}, nil},
		{"with a limit", flux.ReadAllOptions{Limit: 2}, p[:2]},
		{"after a position with a limit", flux.ReadAllOptions{After: p[0], Limit: 2}, p[1:3]},
		{"by event name", flux.ReadAllOptions{EventNames: []string{"UserRegistered"}}, []int64{p[0], p[4]}},
		{"by aggregate type", flux.ReadAllOptions{AggregateTypes: []string{"Envelope"}}, p[2:4]},
		{"by aggregate type with a limit counts matches", flux.ReadAllOptions{AggregateTypes: []string{"User"}, Limit: 2}, []int64{p[0], p[1]}},
		{"by correlation ID", flux.ReadAllOptions{CorrelationID: "c1"}, []int64{p[0], p[2]}},
		{"by request ID", flux.ReadAllOptions{RequestID: "r1"}, []int64{p[0], p[2], p[4]}},
		{"since and until", flux.ReadAllOptions{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, p[1:4]},
		{"combined", flux.ReadAllOptions{AggregateTypes: []string{"User"}, EventNames: []string{"UserRegistered"}, After: p[0]}, []int64{p[4]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			equal(t, "positions", positions(readAll(t, s, c.opts)), c.want)
		})
	}
}

func testCancelled(t *testing.T, h Harness) {
	s := h.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("x", flux.NoStream, event("E", `{}`, base))}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("append with cancelled context: err = %v, want context.Canceled", err)
	}
	for _, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read with cancelled context: err = %v, want context.Canceled", err)
		}
	}
	if recs := readAll(t, s, flux.ReadAllOptions{}); len(recs) != 0 {
		t.Fatalf("cancelled append wrote %d records", len(recs))
	}
	// A deadline that passes while the append waits behind another one is
	// reported as such, and leaves nothing behind.
	hold, held := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		hctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
			close(held)
			<-hold
			return nil
		})
		_, err := s.Append(hctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("holder", flux.NoStream, event("E", `{}`, base))}})
		done <- err
	}()
	<-held
	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = s.Append(dctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("waiter", flux.NoStream, event("E", `{}`, base))}})
	dcancel()
	close(hold)
	if err := <-done; err != nil {
		t.Fatalf("holding append: %v", err)
	}
	if err == nil {
		// Backends whose appends do not wait for each other may succeed.
		equal(t, "waiter", versions(readStream(t, s, "waiter", flux.ReadStreamOptions{})), []int64{1})
	} else {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("append past its deadline: err = %v, want context.DeadlineExceeded", err)
		}
		equal(t, "waiter", versions(readStream(t, s, "waiter", flux.ReadStreamOptions{})), nil)
	}
	equal(t, "holder", versions(readStream(t, s, "holder", flux.ReadStreamOptions{})), []int64{1})
}

// testCancelMidRead: a context cancelled while a read iterates ends it
// with an error matching the context's — never a corrupt-event error.
func testCancelMidRead(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("long", flux.NoStream, events(300, "E")...))
	for round := 0; round < 20; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		for _, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("round %d: read cancelled after %d records: err = %v, want one matching context.Canceled", round, n, err)
				}
				break
			}
			n++
			if n == 1+round*7 {
				cancel()
				time.Sleep(time.Duration(round%3) * time.Millisecond)
			}
		}
		cancel()
	}
}

func testHookFailure(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("kept", flux.NoStream, event("E", `{}`, base)))
	boom := errors.New("injected failure before commit")
	ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error { return boom })
	_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{
		stream("kept", 1, event("E", `{}`, base)),
		stream("new", flux.NoStream, events(3, "E")...),
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	equal(t, "stream kept", versions(readStream(t, s, "kept", flux.ReadStreamOptions{})), []int64{1})
	equal(t, "stream new", versions(readStream(t, s, "new", flux.ReadStreamOptions{})), nil)
	// The rolled-back append left nothing behind that blocks the next one.
	res := mustAppend(t, s, stream("kept", 1, event("E", `{}`, base)))
	equal(t, "versions", res.Versions, []int64{2})
	all := readAll(t, s, flux.ReadAllOptions{})
	increasing(t, "positions", positions(all))
}

func testEarlyBreak(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("s", flux.NoStream, events(50, "E")...))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// If breaking out leaked a cursor or a connection, the pool would run
	// dry (or SQLite would keep a read lock) long before 200 rounds.
	for i := 0; i < 200; i++ {
		for _, err := range s.ReadStream(ctx, "s", flux.ReadStreamOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		for _, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if i%20 == 0 {
			if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream(fmt.Sprintf("w%d", i), flux.NoStream, event("E", `{}`, base))}}); err != nil {
				t.Fatalf("append after %d early breaks: %v", i, err)
			}
		}
	}
}

func testClose(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("s", flux.NoStream, event("E", `{}`, base)))
	if err := s.Close(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{stream("s", flux.Any, event("E", `{}`, base))}})
	if !errors.Is(err, flux.ErrStoreClosed) {
		t.Fatalf("append after close: err = %v, want ErrStoreClosed", err)
	}
	for _, err := range s.ReadStream(context.Background(), "s", flux.ReadStreamOptions{}) {
		if !errors.Is(err, flux.ErrStoreClosed) {
			t.Fatalf("read after close: err = %v, want ErrStoreClosed", err)
		}
	}
	for _, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if !errors.Is(err, flux.ErrStoreClosed) {
			t.Fatalf("read all after close: err = %v, want ErrStoreClosed", err)
		}
	}
}
