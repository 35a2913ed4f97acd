package pgstore_test

import (
	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// storetest skips the cases of an optional capability a store does not
// implement; these assertions make losing one a build failure instead.
var (
	_ flux.EventStore            = (*pgstore.Store)(nil)
	_ flux.SnapshotStore         = (*pgstore.Store)(nil)
	_ flux.IdempotencyStore      = (*pgstore.Store)(nil)
	_ flux.Inspector             = (*pgstore.Store)(nil)
	_ pii.KeyStore               = (*pgstore.Store)(nil)
	_ projection.CheckpointStore = (*pgstore.Store)(nil)
	_ projection.Waker           = (*pgstore.Store)(nil)
)
