// Package storetest is the conformance suite for flux.EventStore
// implementations, in the manner of testing/fstest.TestFS: a backend's own
// test calls Run with a function that opens a fresh, empty store, and the
// suite checks every promise of the storage contract — atomicity, expected
// versions enforced by the database, commit-ordered gap-free positions,
// filters, limits, streaming and closing.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) flux.EventStore {
//				s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "flux.db"), nil)
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { s.Close() })
//				return s
//			},
//		})
//	}
//
// # Capabilities
//
// Only the four methods of flux.EventStore are mandatory. The cases for an
// optional capability — flux.SnapshotStore, flux.IdempotencyStore,
// flux.Inspector, pii.KeyStore, projection.CheckpointStore — find it by type
// assertion on the store New returns; when the store does not implement it,
// they are skipped with the reason ("does not implement flux.SnapshotStore,
// an optional capability"), so `go test -v` shows what a backend leaves out.
// A backend that means to offer a capability should also assert it at
// compile time (var _ flux.SnapshotStore = (*Store)(nil)), so losing it
// fails the build rather than skipping cases.
//
// # Writing a backend outside this repository
//
// Everything the suite needs is public: a backend calls
// txhook.BeforeCommit inside its append transaction, just before the
// commit (the suite uses it to hold transactions open and to make commits
// fail), and validates input with flux.ValidateAppend. The module
// examples/minimalstore is such a backend, in its own module, on top of
// memstore. Benchmark helpers live in storetest/storebench.
//
// New semantics of the contract are added here first, so every backend is
// held to them.
package storetest

import (
	"testing"

	"github.com/fluxcapacitor/flux"
)

// Harness describes the backend under test.
type Harness struct {
	// New returns a new, empty store, isolated from every other store it
	// returned (its own file, schema or database), and registers its
	// cleanup with t.Cleanup. Required.
	New func(t *testing.T) flux.EventStore

	// MaxEventSize is the payload limit of the stores New returns.
	// Default: flux.DefaultMaxEventSize.
	MaxEventSize int

	// Short runs the concurrency cases with fewer rounds. Default false.
	Short bool
}

func (h Harness) maxEventSize() int {
	if h.MaxEventSize > 0 {
		return h.MaxEventSize
	}
	return flux.DefaultMaxEventSize
}

// Run runs the whole suite against the backend described by h. Cases for
// an optional capability the store does not implement are skipped (see
// Capabilities in the package documentation); every other case must pass.
// When every case has finished and every store is closed, no goroutine
// started during the suite may still be running.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	checkGoroutines(t)
	t.Run("append and read round trip", func(t *testing.T) { t.Parallel(); testRoundTrip(t, h) })
	t.Run("expected version matrix", func(t *testing.T) { t.Parallel(); testExpectedVersionMatrix(t, h) })
	t.Run("multi-stream append with one conflict writes nothing", func(t *testing.T) { t.Parallel(); testAtomicMultiStream(t, h) })
	t.Run("invalid input is rejected before any I/O", func(t *testing.T) { t.Parallel(); testInvalidInput(t, h) })
	t.Run("JSON that some databases cannot store is refused everywhere", func(t *testing.T) { t.Parallel(); testJSONLimits(t, h) })
	t.Run("unicode and large payloads round trip", func(t *testing.T) { t.Parallel(); testUnicodeAndLarge(t, h) })
	t.Run("read stream filters", func(t *testing.T) { t.Parallel(); testReadStreamFilters(t, h) })
	t.Run("read all filters", func(t *testing.T) { t.Parallel(); testReadAllFilters(t, h) })
	t.Run("cancelled context writes nothing", func(t *testing.T) { t.Parallel(); testCancelled(t, h) })
	t.Run("a read cancelled mid-way reports the cancellation", func(t *testing.T) { t.Parallel(); testCancelMidRead(t, h) })
	t.Run("failed commit writes nothing", func(t *testing.T) { t.Parallel(); testHookFailure(t, h) })
	t.Run("breaking out of reads releases the cursor", func(t *testing.T) { t.Parallel(); testEarlyBreak(t, h) })
	t.Run("16 goroutines race on one stream", func(t *testing.T) { t.Parallel(); testRace(t, h) })
	t.Run("writers appending with Any never conflict", func(t *testing.T) { t.Parallel(); testConcurrentAny(t, h) })
	t.Run("global log follows commit order under 8 writers", func(t *testing.T) { t.Parallel(); testGlobalLogOrder(t, h) })
	t.Run("reader never skips a lower position that commits later", func(t *testing.T) { t.Parallel(); testHeldTransaction(t, h) })
	t.Run("no read sees an append that has not committed", func(t *testing.T) { t.Parallel(); testUncommittedInvisible(t, h) })
	t.Run("a live subscription sees every event once under 8 writers", func(t *testing.T) { t.Parallel(); testSubscriptionUnderWriters(t, h) })
	t.Run("times follow the log under 4 writers and one with a clock 2s ahead", func(t *testing.T) { t.Parallel(); testTimeOrder(t, h) })
	t.Run("an event given a time before the log's last is stored at it", func(t *testing.T) { t.Parallel(); testStoredTimes(t, h) })
	t.Run("32 commands on one aggregate all apply with the default retries", func(t *testing.T) { t.Parallel(); testRetriesFinish(t, h) })
	t.Run("snapshots", func(t *testing.T) { t.Parallel(); testSnapshots(t, h) })
	t.Run("idempotency keys", func(t *testing.T) { t.Parallel(); testIdempotency(t, h) })
	t.Run("data keys for personal data", func(t *testing.T) { t.Parallel(); testKeys(t, h) })
	t.Run("forgetting an invalid subject is refused the same way everywhere", func(t *testing.T) { t.Parallel(); testForgetValidation(t, h) })
	t.Run("projection checkpoints", func(t *testing.T) { t.Parallel(); testCheckpoints(t, h) })
	t.Run("checkpoint writes are conditional", func(t *testing.T) { t.Parallel(); testCheckpointWrites(t, h) })
	t.Run("concurrent checkpoint writers never move it backwards", func(t *testing.T) { t.Parallel(); testConcurrentCheckpointWriters(t, h) })
	t.Run("three runners share a projection", func(t *testing.T) { t.Parallel(); testRunnersShareAProjection(t, h) })
	t.Run("runner backoff resets after a success", func(t *testing.T) { t.Parallel(); testBackoffResets(t, h) })
	t.Run("streams and head", func(t *testing.T) { t.Parallel(); testInspector(t, h) })
	t.Run("close twice and use after close", func(t *testing.T) { t.Parallel(); testClose(t, h) })
}
