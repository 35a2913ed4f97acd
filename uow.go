package flux

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// unitOfWork tracks the aggregates one command touches, so they are saved
// together when its handler returns. It is carried by the context.
type unitOfWork struct {
	mu      sync.Mutex
	repo    *Repository
	tracked []Aggregate
	byID    map[string]Aggregate
}

type uowKey struct{}

func uowFrom(ctx context.Context) *unitOfWork {
	u, _ := ctx.Value(uowKey{}).(*unitOfWork)
	return u
}

// withoutUnitOfWork hides the unit of work from code that runs after it
// committed (event handlers) or that commits it.
func withoutUnitOfWork(ctx context.Context) context.Context {
	if uowFrom(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, uowKey{}, (*unitOfWork)(nil))
}

// ErrNoUnitOfWork is returned by Track and by uniqueness claims called
// outside a command handler run by a CommandBus.
var ErrNoUnitOfWork = errors.New("flux: no unit of work in the context")

// Track adds aggregates — typically newly created ones — to the unit of
// work of the command being handled: they are saved, atomically with every
// other aggregate the command loaded or tracked, when its handler returns
// nil. It fails with ErrNoUnitOfWork outside a command handler.
func Track(ctx context.Context, aggs ...Aggregate) error {
	u := uowFrom(ctx)
	if u == nil {
		return fmt.Errorf("%w: flux.Track outside a command handler; save with Repository.Save instead", ErrNoUnitOfWork)
	}
	return u.track(aggs...)
}

func (u *unitOfWork) track(aggs ...Aggregate) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, a := range aggs {
		if isNilAggregate(a) {
			return errorf(ErrUnknownAggregate, "track: aggregate is nil")
		}
		id := a.ID()
		if prev, ok := u.byID[id]; ok {
			if prev != a {
				return errorf(ErrInvalidAppend, "track: another instance of aggregate %q is already tracked; load it once per command (loads return the tracked instance)", id)
			}
			continue
		}
		u.byID[id] = a
		u.tracked = append(u.tracked, a)
	}
	return nil
}

// lookup returns the tracked instance of id.
func (u *unitOfWork) lookup(id string) (Aggregate, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a, ok := u.byID[id]
	return a, ok
}

func (u *unitOfWork) aggregates() []Aggregate {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Aggregate(nil), u.tracked...)
}
