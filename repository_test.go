package flux_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

func newRepo(t *testing.T) (*flux.Repository, *memstore.Store) {
	t.Helper()
	store := memstore.New()
	repo, err := flux.NewRepository(flux.Config{
		Store:    store,
		Registry: newRegistry(),
		Clock:    steppingClock(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return repo, store
}

func TestNewRepositoryValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := flux.NewRepository(flux.Config{})
	if err == nil || !strings.Contains(err.Error(), "Config.Store is nil") || !strings.Contains(err.Error(), "Config.Registry is nil") {
		t.Fatalf("err = %v, want both missing fields named", err)
	}
}

func TestSaveAndLoad(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, _ := newRepo(t)
	u, err := RegisterUser("u1", "ada@example.com", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	_ = u.Rename("Ada King")
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	if len(u.PendingEvents()) != 0 || u.Version() != 2 {
		t.Fatalf("after save: %d pending, version %d; want 0 pending, version 2", len(u.PendingEvents()), u.Version())
	}
	// Saving again without changes is a no-op.
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	_ = u.Rename("Ada Lovelace")
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := flux.Load[*User](ctx, repo, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != "u1" || got.Name != "Ada Lovelace" || got.Email != "ada@example.com" || got.Version() != 3 {
		t.Fatalf("loaded %+v version %d", got, got.Version())
	}
	if info := got.LoadInfo(); info.EventsReplayed != 3 || info.SnapshotVersion != 0 {
		t.Fatalf("load info = %+v", info)
	}
	v2, err := flux.LoadVersion[*User](ctx, repo, "u1", 2)
	if err != nil || v2.Name != "Ada King" || v2.Version() != 2 {
		t.Fatalf("LoadVersion(2) = %+v, %v", v2, err)
	}
	dyn, err := repo.LoadAggregate(ctx, "User", "u1", flux.LoadOptions{})
	if err != nil || dyn.(*User).Name != "Ada Lovelace" {
		t.Fatalf("LoadAggregate = %+v, %v", dyn, err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, store := newRepo(t)
	u, err := RegisterUser("u1", "ada@example.com", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	_, err = flux.Load[*User](ctx, repo, "ghost")
	if !errors.Is(err, flux.ErrAggregateNotFound) || !strings.Contains(err.Error(), `User "ghost"`) {
		t.Fatalf("missing: err = %v", err)
	}
	if _, err := flux.Load[*User](ctx, repo, ""); !errors.Is(err, flux.ErrInvalidStreamID) {
		t.Fatalf("empty id: err = %v", err)
	}
	if _, err := flux.Load[*Other](ctx, repo, "u1"); !errors.Is(err, flux.ErrUnknownAggregate) {
		t.Fatalf("unregistered type: err = %v", err)
	}
	if _, err := flux.LoadAt[*User](ctx, repo, "u1", time.Time{}); !errors.Is(err, flux.ErrInvalidArgument) || !strings.Contains(err.Error(), `"u1"`) {
		t.Fatalf("LoadAt with a zero time: err = %v, want flux.ErrInvalidArgument naming the stream", err)
	}
	for _, v := range []int64{0, -1} {
		if _, err := flux.LoadVersion[*User](ctx, repo, "u1", v); !errors.Is(err, flux.ErrInvalidArgument) || !strings.Contains(err.Error(), `"u1"`) {
			t.Fatalf("LoadVersion(%d): err = %v, want flux.ErrInvalidArgument naming the stream", v, err)
		}
	}

	// A stream written under another aggregate type.
	_, err = store.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: "acc-1", AggregateType: "Account", Expected: flux.NoStream,
		Events: []flux.EventData{{EventID: "0190f6a0-3c1e-7b8e-9d2f-0123456789ab", EventName: "UserRegistered", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: time.Now()}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := flux.Load[*User](ctx, repo, "acc-1"); !errors.Is(err, flux.ErrAggregateTypeMismatch) {
		t.Fatalf("type mismatch: err = %v", err)
	}

	// A stored event that no longer decodes names the stream and version.
	_, err = store.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: "u1", AggregateType: "User", Expected: 1,
		Events: []flux.EventData{{EventID: "0190f6a0-3c1e-7b8e-9d2f-0123456789ac", EventName: "UserRenamed", EventVersion: 1, Payload: []byte(`{"name":42}`), OccurredAt: time.Now()}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = flux.Load[*User](ctx, repo, "u1")
	var ee *flux.EventError
	if !errors.Is(err, flux.ErrCorruptEvent) || !errors.As(err, &ee) || ee.StreamID != "u1" || ee.StreamVersion != 2 || ee.EventName != "UserRenamed" {
		t.Fatalf("corrupt event: err = %v", err)
	}
}

func TestSaveRejectsBadAggregates(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, store := newRepo(t)
	noID := new(User)
	flux.Raise(noID, UserRegistered{Email: "x@example.com"})
	unregEvent, err := RegisterUser("u2", "b@example.com", "B")
	if err != nil {
		t.Fatal(err)
	}
	flux.Raise(unregEvent, OtherHappened{})
	foreignEvent, err := RegisterUser("u3", "c@example.com", "C")
	if err != nil {
		t.Fatal(err)
	}
	other := new(Other)
	other.SetID("o1")
	flux.Raise(other, UserRenamed{Name: "x"})
	dup, err := RegisterUser("u4", "d@example.com", "D")
	if err != nil {
		t.Fatal(err)
	}
	var nilUser *User

	cases := []struct {
		name string
		aggs []flux.Aggregate
		want error
	}{
		{"no ID", []flux.Aggregate{noID}, flux.ErrInvalidStreamID},
		{"unregistered event", []flux.Aggregate{unregEvent}, flux.ErrUnknownEvent},
		{"unregistered aggregate", []flux.Aggregate{other}, flux.ErrUnknownAggregate},
		{"nil aggregate", []flux.Aggregate{nilUser}, flux.ErrUnknownAggregate},
		{"untyped nil aggregate", []flux.Aggregate{nil}, flux.ErrUnknownAggregate},
		{"the same aggregate twice", []flux.Aggregate{dup, dup}, flux.ErrInvalidAppend},
		{"a good aggregate with a bad one", []flux.Aggregate{foreignEvent, unregEvent}, flux.ErrUnknownEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := repo.Save(ctx, c.aggs...); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	for _, err := range store.ReadAll(ctx, flux.ReadAllOptions{}) {
		t.Fatalf("rejected saves wrote something (%v)", err)
	}
	if len(foreignEvent.PendingEvents()) != 1 {
		t.Fatal("a failed save dropped pending events")
	}
}

func TestMultiAggregateSaveIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, _ := newRepo(t)
	a, err := RegisterUser("a", "a@example.com", "A")
	if err != nil {
		t.Fatal(err)
	}
	b, err := RegisterUser("b", "b@example.com", "B")
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Save(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	staleB, _ := flux.Load[*User](ctx, repo, "b")
	freshB, _ := flux.Load[*User](ctx, repo, "b")
	_ = freshB.Rename("B2")
	if err := repo.Save(ctx, freshB); err != nil {
		t.Fatal(err)
	}

	_ = a.Rename("A2")
	_ = staleB.Rename("B3")
	err = repo.Save(ctx, a, staleB)
	var ce *flux.ConflictError
	if !errors.As(err, &ce) || ce.StreamID != "b" || ce.Expected != 1 || ce.Actual != 2 {
		t.Fatalf("err = %v, want conflict on b expected 1 actual 2", err)
	}
	gotA, _ := flux.Load[*User](ctx, repo, "a")
	if gotA.Name != "A" || gotA.Version() != 1 {
		t.Fatalf("a = %q v%d after a failed multi-aggregate save, want A v1", gotA.Name, gotA.Version())
	}
	if len(a.PendingEvents()) != 1 {
		t.Fatalf("a lost its pending events after the failed save")
	}
}

func TestSaveStampsMetadataFromContext(t *testing.T) {
	t.Parallel()
	repo, _ := newRepo(t)
	ctx := flux.WithRequestID(t.Context(), "req-42")
	ctx = flux.WithCausationID(ctx, "cmd-7")
	ctx = flux.WithMetadata(ctx, "tenant", "acme")
	u, err := RegisterUser("u1", "a@example.com", "A")
	if err != nil {
		t.Fatal(err)
	}
	_ = u.Rename("B")
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	// Without any IDs: the default request ID, correlation = first event ID.
	v, err := RegisterUser("u2", "b@example.com", "B")
	if err != nil {
		t.Fatal(err)
	}
	_ = v.Rename("C")
	if err := repo.Save(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	var envs []flux.Envelope
	for e, err := range repo.AllEvents(t.Context(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
	}
	for _, e := range envs[:2] {
		m := e.Metadata
		if m.RequestID != "req-42" || m.CorrelationID != "req-42" || m.CausationID != "cmd-7" || m.Extra["tenant"] != "acme" {
			t.Fatalf("metadata = %+v", m)
		}
	}
	for _, e := range envs[2:] {
		m := e.Metadata
		if m.RequestID != flux.DefaultRequestID || m.CorrelationID != envs[2].EventID || m.CausationID != "" {
			t.Fatalf("default metadata = %+v (first event %s)", m, envs[2].EventID)
		}
	}
	if !envs[0].OccurredAt.Equal(envs[1].OccurredAt) {
		t.Fatal("events of one save have different times")
	}
	// An explicit correlation ID wins.
	w, err := RegisterUser("u3", "c@example.com", "C")
	if err != nil {
		t.Fatal(err)
	}
	cctx := flux.WithCorrelationID(ctx, "corr-9")
	if err := repo.Save(cctx, w); err != nil {
		t.Fatal(err)
	}
	for e, err := range repo.Events(t.Context(), "u3", nil) {
		if err != nil || e.Metadata.CorrelationID != "corr-9" || e.Metadata.RequestID != "req-42" {
			t.Fatalf("explicit correlation: %+v, %v", e.Metadata, err)
		}
	}
}

func TestRequestIDMiddleware(t *testing.T) {
	t.Parallel()
	var seen string
	h := flux.RequestIDMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = flux.MetadataFrom(r.Context()).RequestID
	}))
	cases := []struct {
		name, header string
		keep         bool
	}{
		{"header kept", "abc-123", true},
		{"missing header replaced", "", false},
		{"overlong header replaced", strings.Repeat("x", 200), false},
		{"control characters replaced", "abc\x01def", false},
		{"non-ASCII replaced", "zoë", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			if c.header != "" {
				req.Header.Set(flux.RequestIDHeader, c.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if c.keep && seen != c.header {
				t.Fatalf("request ID = %q, want %q", seen, c.header)
			}
			if !c.keep && (seen == c.header || len(seen) != 36) {
				t.Fatalf("request ID = %q, want a new UUID", seen)
			}
			if got := rec.Header().Get(flux.RequestIDHeader); got != seen {
				t.Fatalf("response header = %q, want %q", got, seen)
			}
		})
	}
}

func TestEventsFilters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, _ := newRepo(t)
	u, err := RegisterUser("u1", "a@example.com", "A")
	if err != nil {
		t.Fatal(err)
	}
	_ = repo.Save(ctx, u)
	_ = u.Rename("B")
	_ = u.Rename("C")
	_ = repo.Save(ctx, u)

	count := func(opts *flux.EventsOptions) (int, error) {
		n := 0
		for _, err := range repo.Events(ctx, "u1", opts) {
			if err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	if n, err := count(nil); n != 3 || err != nil {
		t.Fatalf("all = %d, %v", n, err)
	}
	if n, err := count(&flux.EventsOptions{Names: []string{"UserRegistered"}}); n != 1 || err != nil {
		t.Fatalf("by name = %d, %v", n, err)
	}
	if n, err := count(&flux.EventsOptions{Types: []any{UserRenamed{}}, FromVersion: 3}); n != 1 || err != nil {
		t.Fatalf("by type from version = %d, %v", n, err)
	}
	if _, err := count(&flux.EventsOptions{Types: []any{OtherHappened{}}}); !errors.Is(err, flux.ErrUnknownEvent) {
		t.Fatalf("unregistered type filter: err = %v", err)
	}
	if _, err := count(&flux.EventsOptions{Names: []string{"Nope"}}); !errors.Is(err, flux.ErrUnknownEvent) {
		t.Fatalf("unregistered name filter: err = %v", err)
	}
	// Breaking out early is fine.
	for range repo.Events(ctx, "u1", nil) {
		break
	}
}

func TestContextMetadataIsCopiedNotShared(t *testing.T) {
	t.Parallel()
	base := flux.WithMetadata(context.Background(), "a", "1")
	one := flux.WithMetadata(base, "b", "2")
	two := flux.WithMetadata(base, "c", "3")
	if len(flux.MetadataFrom(base).Extra) != 1 || flux.MetadataFrom(one).Extra["c"] != "" || flux.MetadataFrom(two).Extra["b"] != "" {
		t.Fatalf("contexts share metadata: base %v one %v two %v", flux.MetadataFrom(base), flux.MetadataFrom(one), flux.MetadataFrom(two))
	}
}
