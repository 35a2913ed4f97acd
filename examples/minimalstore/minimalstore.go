// Package minimalstore is the smallest backend the conformance suite
// accepts: it implements only the four methods of flux.EventStore, on top
// of memstore, and none of the optional capabilities (snapshots,
// idempotency keys, inspection, personal-data keys, checkpoints).
//
// It lives in its own module, outside the core's module tree, to prove that
// a backend written elsewhere can run storetest with public packages only:
// its test calls storetest.Run, and the cases for the capabilities it
// leaves out are skipped with the reason. Copy it as the starting point of
// a new backend.
package minimalstore

import (
	"context"
	"iter"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// Store is an event store with the mandatory methods only. It is safe for
// concurrent use.
type Store struct {
	mem *memstore.Store
}

var _ flux.EventStore = (*Store)(nil)

// New returns an empty store. Close it when done.
func New() *Store { return &Store{mem: memstore.New()} }

// Append implements flux.EventStore. memstore validates req with
// flux.ValidateAppend and calls txhook.BeforeCommit before it commits, as
// every backend must.
func (s *Store) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	return s.mem.Append(ctx, req)
}

// ReadStream implements flux.EventStore.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts flux.ReadStreamOptions) iter.Seq2[flux.Record, error] {
	return s.mem.ReadStream(ctx, streamID, opts)
}

// ReadAll implements flux.EventStore.
func (s *Store) ReadAll(ctx context.Context, opts flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	return s.mem.ReadAll(ctx, opts)
}

// Close implements flux.EventStore.
func (s *Store) Close() error { return s.mem.Close() }
