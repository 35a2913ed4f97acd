package budget

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fluxcapacitor/flux"
)

// Definitions returns the domain's registry entries (the seed's
// event_mappings.yaml): aggregate types, their events and versions.
func Definitions() []flux.Definition {
	return []flux.Definition{
		flux.AggregateType("User", func() *User { return new(User) },
			flux.EventType[UserSignedUp]("UserSignedUp", 1),
			flux.EventType[UserFirstnameChanged]("UserFirstnameChanged", 1),
			flux.EventType[UserLastnameChanged]("UserLastnameChanged", 1),
			flux.EventType[UserDeleted]("UserDeleted", 1),
			flux.Snapshots(flux.SnapshotPolicy{Every: 10, Keep: 2}),
		),
		flux.AggregateType("BudgetEnvelope", func() *BudgetEnvelope { return new(BudgetEnvelope) },
			flux.EventType[BudgetEnvelopeAdded]("BudgetEnvelopeAdded", 1),
			flux.EventType[BudgetEnvelopeRenamed]("BudgetEnvelopeRenamed", 1),
			// v1, written by the PHP library, called the amount
			// creditedAmount and stored it as a decimal string in euros.
			flux.EventType[BudgetEnvelopeCredited]("BudgetEnvelopeCredited", 2,
				flux.Upcast(1, upcastCreditedV1)),
			flux.EventType[BudgetEnvelopeDebited]("BudgetEnvelopeDebited", 1),
			flux.Snapshots(flux.SnapshotPolicy{Every: 10, Keep: 2}),
		),
		flux.UniqueClaims(), // the e-mail and envelope-name registries
	}
}

// upcastCreditedV1 turns {"creditedAmount":"12.50"} into {"amount":1250}.
func upcastCreditedV1(p *flux.Payload) error {
	euros, err := p.StringValue("creditedAmount")
	if err != nil {
		return fmt.Errorf("v1 credit has no creditedAmount string: %w", err)
	}
	whole, frac, _ := strings.Cut(euros, ".")
	frac = (frac + "00")[:2]
	cents, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return fmt.Errorf("v1 creditedAmount is not a decimal amount")
	}
	p.Delete("creditedAmount")
	return p.Set("amount", cents)
}

// NewRegistry returns the domain's registry.
func NewRegistry() (*flux.Registry, error) { return flux.NewRegistry(Definitions()...) }
