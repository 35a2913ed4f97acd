// Package txhook is the before-commit fault hook of the storage contract:
// a function carried by the context runs inside a backend's append
// transaction, after the events are written and before the commit. The
// conformance suite (storetest) uses it to hold a transaction open or to
// make a commit fail, so that ordering and atomicity can be checked.
//
// A backend calls BeforeCommit once per append, inside its transaction,
// after every row of the append (events, snapshots, idempotency records) is
// written; if it returns an error the backend rolls back and returns that
// error. A backend that does not call it fails the suite's "failed commit
// writes nothing" case. Applications never set a hook.
package txhook

import "context"

type key struct{}

// WithBeforeCommit returns a context whose appends call fn just before they
// commit. If fn returns an error the append rolls back and returns it.
func WithBeforeCommit(ctx context.Context, fn func(context.Context) error) context.Context {
	return context.WithValue(ctx, key{}, fn)
}

// BeforeCommit runs the hook carried by ctx, if any, and returns its error.
// Backends call it inside the append transaction, just before committing.
func BeforeCommit(ctx context.Context) error {
	if fn, ok := ctx.Value(key{}).(func(context.Context) error); ok && fn != nil {
		return fn(ctx)
	}
	return nil
}
