package flux_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// recorder records operations as "kind name: outcome" lines, with nesting.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

type depthKey struct{}

func (r *recorder) Start(ctx context.Context, op flux.Operation) (context.Context, func(flux.Outcome)) {
	depth, _ := ctx.Value(depthKey{}).(int)
	return context.WithValue(ctx, depthKey{}, depth+1), func(o flux.Outcome) {
		r.mu.Lock()
		defer r.mu.Unlock()
		line := fmt.Sprintf("%s%s %s type=%s stream=%s events=%d", strings.Repeat("  ", depth), op.Kind, op.Name, op.AggregateType, op.StreamID, op.Events)
		if op.Kind == flux.OpLoad {
			line += fmt.Sprintf(" replayed=%d snapshot=%v", o.EventsReplayed, o.SnapshotUsed)
		}
		if op.Kind == flux.OpSave {
			line += fmt.Sprintf(" snapshots=%d", o.SnapshotsWritten)
		}
		if o.Err != nil {
			line += fmt.Sprintf(" conflict=%v err", o.Conflict)
		}
		r.lines = append(r.lines, line)
	}
}

func (r *recorder) Notice(ctx context.Context, n flux.Notice) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf("notice %s %s %d->%d %s", n.Kind, n.Event, n.FromVersion, n.ToVersion, n.Reason))
}

func (r *recorder) TraceMetadata(ctx context.Context) map[string]string {
	return map[string]string{"traceparent": "00-trace-span-01"}
}

func TestObserverSeesCommandsSavesAppendsLoadsAndUpcasts(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	store := memstore.New()
	reg, err := flux.NewRegistry(
		flux.AggregateType("Counter", func() *Counter { return new(Counter) },
			flux.EventType[Added]("Added", 2, flux.Upcast(1, func(p *flux.Payload) error { return nil })),
			flux.EventType[Reset]("Reset", 1),
			flux.Snapshots(flux.SnapshotPolicy{Every: 2})),
	)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	_ = flux.HandleCommand(bus, func(ctx context.Context, c Increment) error {
		ctr, err := flux.Load[*Counter](ctx, repo, c.ID)
		if err != nil {
			return err
		}
		flux.Raise(ctr, Added{N: 1})
		return nil
	})
	storeRawCounter(t, store, "c1", `{"n":5}`) // an old v1 event
	if err := bus.Dispatch(t.Context(), Increment{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rec.lines, "\n")
	want := strings.Join([]string{
		"notice upcast Added 1->2 ",
		"  load  type=Counter stream=c1 events=0 replayed=1 snapshot=false",
		"    append  type=Counter stream=c1 events=1",
		"  save  type=Counter stream=c1 events=1 snapshots=1",
		"command flux_test.Increment type= stream= events=0",
	}, "\n")
	if got != want {
		t.Fatalf("observed:\n%s\nwant:\n%s", got, want)
	}
	for r, err := range store.ReadAll(t.Context(), flux.ReadAllOptions{After: 1}) {
		if err != nil || r.Metadata.Extra["traceparent"] != "00-trace-span-01" {
			t.Fatalf("trace metadata not stored: %+v (%v)", r.Metadata, err)
		}
	}
	rec.lines = nil
	if _, err := flux.Load[*Counter](t.Context(), repo, "c1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.lines, "\n"); got != "load  type=Counter stream=c1 events=0 replayed=0 snapshot=true" {
		t.Fatalf("second load observed as %q", got)
	}
}

func storeRawCounter(t *testing.T, s flux.EventStore, id, payload string) {
	t.Helper()
	_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: id, AggregateType: "Counter", Expected: flux.NoStream,
		Events: []flux.EventData{{EventID: testIDs.New(), EventName: "Added", EventVersion: 1, Payload: []byte(payload), OccurredAt: testNow()}}}}})
	if err != nil {
		t.Fatal(err)
	}
}

// Patient and PersonNamed carry personal data, for the failure notices.
type Patient struct {
	flux.Root
	Name string
}

type PersonNamed struct {
	ID   string `json:"id" pii:"subject"`
	Name string `json:"name" pii:"data"`
}

func (p *Patient) Apply(e any) {
	if e, ok := e.(PersonNamed); ok {
		p.Name = e.Name
	}
}

// notices records point events.
type notices struct {
	mu   sync.Mutex
	seen []flux.Notice
}

func (n *notices) Start(ctx context.Context, _ flux.Operation) (context.Context, func(flux.Outcome)) {
	return ctx, func(flux.Outcome) {}
}

func (n *notices) Notice(_ context.Context, x flux.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = append(n.seen, x)
}

func (n *notices) TraceMetadata(context.Context) map[string]string { return nil }

// TestObserverSeesPersonalDataFailures: a save that cannot encrypt (the
// subject was forgotten) and a load that cannot decrypt (wrong secret) are
// reported as personal-data notices with their operation and reason, and
// never the value.
func TestObserverSeesPersonalDataFailures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	reg, err := flux.NewRegistry(flux.AggregateType("Patient", func() *Patient { return new(Patient) },
		flux.EventType[PersonNamed]("PersonNamed", 1)))
	if err != nil {
		t.Fatal(err)
	}
	open := func(secret string) (*flux.Repository, *pii.Protector, *notices) {
		prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret)})
		if err != nil {
			t.Fatal(err)
		}
		obs := &notices{}
		repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Protector: prot, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		return repo, prot, obs
	}
	repo, prot, obs := open("the-first-secret-of-enough-length")
	name := func(id string) error {
		p := new(Patient)
		p.SetID(id)
		flux.Raise(p, PersonNamed{ID: id, Name: "Secret Canary"})
		return repo.Save(ctx, p)
	}
	if err := name("p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := prot.Forget(ctx, "p1", pii.ForgetOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	p := new(Patient)
	p.SetID("p2")
	flux.Raise(p, PersonNamed{ID: "p1", Name: "Secret Canary"})
	if err := repo.Save(ctx, p); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("save for a forgotten subject: %v", err)
	}
	if err := name("p3"); err != nil {
		t.Fatal(err)
	}
	other, _, otherObs := open("another-secret-of-enough-length!")
	if _, err := flux.Load[*Patient](ctx, other, "p3"); !errors.Is(err, pii.ErrWrongSecret) {
		t.Fatalf("load with the wrong secret: %v", err)
	}
	want := []flux.Notice{{Kind: flux.NoticePersonalData, Event: "PersonNamed", Op: "encrypt", Reason: "forgotten"}}
	if got := obs.seen; len(got) == 0 || got[len(got)-1] != want[0] {
		t.Errorf("encrypt notices %+v, want the last to be %+v", got, want[0])
	}
	want = []flux.Notice{{Kind: flux.NoticePersonalData, Event: "PersonNamed", Op: "decrypt", Reason: "wrong_secret"}}
	if got := otherObs.seen; len(got) != 1 || got[0] != want[0] {
		t.Errorf("decrypt notices %+v, want %+v", got, want)
	}
	for _, n := range append(obs.seen, otherObs.seen...) {
		if strings.Contains(fmt.Sprint(n), "Canary") {
			t.Fatalf("a notice quotes the value: %+v", n)
		}
	}
}
