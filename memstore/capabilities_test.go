package memstore_test

import (
	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// storetest skips the cases of an optional capability a store does not
// implement; these assertions make losing one a build failure instead.
var (
	_ flux.EventStore            = (*memstore.Store)(nil)
	_ flux.SnapshotStore         = (*memstore.Store)(nil)
	_ flux.IdempotencyStore      = (*memstore.Store)(nil)
	_ flux.Inspector             = (*memstore.Store)(nil)
	_ pii.KeyStore               = (*memstore.Store)(nil)
	_ projection.CheckpointStore = (*memstore.Store)(nil)
	_ projection.Waker           = (*memstore.Store)(nil)
)
