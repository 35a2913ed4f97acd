// Package fluxtest tests aggregates the way Axon's AggregateTestFixture
// does: given past events, when a behaviour runs, then these events (or
// this error).
//
//	func TestRename(t *testing.T) {
//		fluxtest.For[*User](t, registry).
//			Given(UserRegistered{Email: "ada@example.com", Name: "Ada"}).
//			When(func(u *User) error { return u.Rename("Ada Lovelace") }).
//			Then(UserRenamed{Name: "Ada Lovelace"})
//	}
//
// The given events go through the same path as production data: they are
// encoded (personal data encrypted), stored in a memstore and the aggregate
// is loaded from it, so an unregistered event or one that does not survive
// JSON fails the test. The events the behaviour raises are saved the same
// way.
package fluxtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// DefaultID is the aggregate ID fixtures use unless WithID sets another.
const DefaultID = "fluxtest-aggregate"

// Fixture holds the history of one aggregate under test.
type Fixture[A flux.Aggregate] struct {
	t     testing.TB
	reg   *flux.Registry
	id    string
	clock time.Time
	given []any
}

// For starts a fixture for aggregate type A, registered in reg.
func For[A flux.Aggregate](t testing.TB, reg *flux.Registry) *Fixture[A] {
	t.Helper()
	if reg == nil {
		t.Fatal("fluxtest: registry is nil")
	}
	return &Fixture[A]{t: t, reg: reg, id: DefaultID, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// WithID sets the aggregate's ID (default DefaultID).
func (f *Fixture[A]) WithID(id string) *Fixture[A] {
	f.id = id
	return f
}

// At sets the time the given events are stored at; each event is one
// second after the previous one (default 2026-01-01T00:00:00Z).
func (f *Fixture[A]) At(t time.Time) *Fixture[A] {
	f.clock = t
	return f
}

// Given sets the aggregate's past events, oldest first.
func (f *Fixture[A]) Given(events ...any) *Fixture[A] {
	f.given = append(f.given, events...)
	return f
}

// When rebuilds the aggregate from the given events (or creates an empty
// one with the fixture's ID when there are none) and runs behaviour on it.
func (f *Fixture[A]) When(behaviour func(a A) error) *Result[A] {
	f.t.Helper()
	ctx := context.Background()
	store := memstore.New()
	now := f.clock
	// Personal data is encrypted as in production, under a test secret.
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte("fluxtest-secret-not-for-production")})
	if err != nil {
		f.t.Fatalf("fluxtest: %v", err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: f.reg, Protector: prot, Clock: func() time.Time {
		now = now.Add(time.Second)
		return now
	}})
	if err != nil {
		f.t.Fatalf("fluxtest: %v", err)
	}
	var a A
	if len(f.given) == 0 {
		a, err = flux.NewAggregate[A](f.reg, f.id)
		if err != nil {
			f.t.Fatalf("fluxtest: %v", err)
		}
	} else {
		seed, err := flux.NewAggregate[A](f.reg, f.id)
		if err != nil {
			f.t.Fatalf("fluxtest: %v", err)
		}
		for _, e := range f.given {
			flux.Raise(seed, e)
		}
		if err := repo.Save(ctx, seed); err != nil {
			f.t.Fatalf("fluxtest: store the given events: %v", err)
		}
		a, err = flux.Load[A](ctx, repo, f.id)
		if err != nil {
			f.t.Fatalf("fluxtest: load the aggregate from the given events: %v", err)
		}
	}
	res := &Result[A]{t: f.t, repo: repo, agg: a}
	res.err = behaviour(a)
	res.raised = append([]any(nil), a.PendingEvents()...)
	return res
}

// Result is the outcome of When, to be checked with Then, ThenError or
// ThenState.
type Result[A flux.Aggregate] struct {
	t      testing.TB
	repo   *flux.Repository
	agg    A
	err    error
	raised []any
}

// Then checks that the behaviour succeeded and raised exactly these events,
// in this order (compared with reflect.DeepEqual). Then() with no events
// checks that nothing was raised. The raised events are also saved, so an
// unregistered one fails the test.
func (r *Result[A]) Then(events ...any) *Result[A] {
	r.t.Helper()
	if r.err != nil {
		r.t.Fatalf("fluxtest: behaviour failed: %v\nwant events:\n%s", r.err, list(events))
	}
	if !sameEvents(r.raised, events) {
		r.t.Fatalf("fluxtest: raised events differ\n got:\n%s want:\n%s", list(r.raised), list(events))
	}
	if err := r.repo.Save(context.Background(), r.agg); err != nil {
		r.t.Fatalf("fluxtest: save the raised events: %v", err)
	}
	return r
}

// ThenError checks that the behaviour failed with an error matching target
// (errors.Is) and raised no events.
func (r *Result[A]) ThenError(target error) *Result[A] {
	r.t.Helper()
	if r.err == nil {
		r.t.Fatalf("fluxtest: behaviour succeeded, want error %v; raised:\n%s", target, list(r.raised))
	}
	if !errors.Is(r.err, target) {
		r.t.Fatalf("fluxtest: error = %v, want one matching %v", r.err, target)
	}
	if len(r.raised) != 0 {
		r.t.Fatalf("fluxtest: behaviour failed with %v but raised events:\n%s", r.err, list(r.raised))
	}
	return r
}

// ThenState passes the aggregate, after the behaviour, to check.
func (r *Result[A]) ThenState(check func(t testing.TB, a A)) *Result[A] {
	r.t.Helper()
	check(r.t, r.agg)
	return r
}

// Err returns the behaviour's error.
func (r *Result[A]) Err() error { return r.err }

// Raised returns the events the behaviour raised.
func (r *Result[A]) Raised() []any { return r.raised }

func sameEvents(got, want []any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			return false
		}
	}
	return true
}

func list(events []any) string {
	if len(events) == 0 {
		return "    (none)\n"
	}
	var b strings.Builder
	for i, e := range events {
		fmt.Fprintf(&b, "    %d. %T %+v\n", i+1, e, e)
	}
	return b.String()
}
