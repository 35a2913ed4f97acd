package sqlitestore_test

import (
	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// storetest skips the cases of an optional capability a store does not
// implement; these assertions make losing one a build failure instead.
var (
	_ flux.EventStore            = (*sqlitestore.Store)(nil)
	_ flux.SnapshotStore         = (*sqlitestore.Store)(nil)
	_ flux.IdempotencyStore      = (*sqlitestore.Store)(nil)
	_ flux.Inspector             = (*sqlitestore.Store)(nil)
	_ pii.KeyStore               = (*sqlitestore.Store)(nil)
	_ projection.CheckpointStore = (*sqlitestore.Store)(nil)
	_ projection.Waker           = (*sqlitestore.Store)(nil)
)
