// Package txhook lets the conformance suite and fault tests act inside a
// backend's append transaction: a function carried by the context runs
// after the events are written and before the commit. Backends call
// BeforeCommit; nothing outside this module tree can set a hook.
package txhook

import "context"

type key struct{}

// WithBeforeCommit returns a context whose appends call fn just before they
// commit. If fn returns an error the append rolls back and returns it.
func WithBeforeCommit(ctx context.Context, fn func(context.Context) error) context.Context {
	return context.WithValue(ctx, key{}, fn)
}

// BeforeCommit runs the hook carried by ctx, if any.
func BeforeCommit(ctx context.Context) error {
	if fn, ok := ctx.Value(key{}).(func(context.Context) error); ok && fn != nil {
		return fn(ctx)
	}
	return nil
}
