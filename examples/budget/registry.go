package budget

import "github.com/fluxcapacitor/flux"

// Definitions returns the domain's registry entries (the seed's
// event_mappings.yaml): aggregate types, their events and versions.
func Definitions() []flux.Definition {
	return []flux.Definition{
		flux.AggregateType("User", func() *User { return new(User) },
			flux.EventType[UserSignedUp]("UserSignedUp", 1),
			flux.EventType[UserFirstnameChanged]("UserFirstnameChanged", 1),
			flux.EventType[UserLastnameChanged]("UserLastnameChanged", 1),
			flux.EventType[UserDeleted]("UserDeleted", 1),
		),
		flux.AggregateType("BudgetEnvelope", func() *BudgetEnvelope { return new(BudgetEnvelope) },
			flux.EventType[BudgetEnvelopeAdded]("BudgetEnvelopeAdded", 1),
			flux.EventType[BudgetEnvelopeRenamed]("BudgetEnvelopeRenamed", 1),
			flux.EventType[BudgetEnvelopeCredited]("BudgetEnvelopeCredited", 1),
			flux.EventType[BudgetEnvelopeDebited]("BudgetEnvelopeDebited", 1),
			flux.Snapshots(flux.SnapshotPolicy{Every: 10, Keep: 2}),
		),
		flux.UniqueClaims(), // the e-mail and envelope-name registries
	}
}

// NewRegistry returns the domain's registry.
func NewRegistry() (*flux.Registry, error) { return flux.NewRegistry(Definitions()...) }
