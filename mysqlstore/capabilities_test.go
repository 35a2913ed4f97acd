package mysqlstore_test

import (
	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// storetest skips the cases of an optional capability a store does not
// implement; these assertions make losing one a build failure instead.
var (
	_ flux.EventStore            = (*mysqlstore.Store)(nil)
	_ flux.SnapshotStore         = (*mysqlstore.Store)(nil)
	_ flux.IdempotencyStore      = (*mysqlstore.Store)(nil)
	_ flux.Inspector             = (*mysqlstore.Store)(nil)
	_ pii.KeyStore               = (*mysqlstore.Store)(nil)
	_ projection.CheckpointStore = (*mysqlstore.Store)(nil)
	_ projection.Waker           = (*mysqlstore.Store)(nil)
)
