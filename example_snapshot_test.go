package flux_test

import (
	"context"
	"fmt"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// Ledger stores its exported fields as its snapshot.
type Ledger struct {
	flux.Root
	Balance int `json:"balance"`
}

type Booked struct {
	Amount int `json:"amount"`
}

func (l *Ledger) Apply(e any) {
	if b, ok := e.(Booked); ok {
		l.Balance += b.Amount
	}
}

func (l *Ledger) SnapshotState() any                           { return l }
func (l *Ledger) RestoreSnapshot(decode func(any) error) error { return decode(l) }

// Aggregates implementing flux.Snapshotter are snapshotted on save; loads
// start from the newest snapshot and replay only the events after it.
func ExampleSnapshots() {
	ctx := context.Background()
	reg, err := flux.NewRegistry(flux.AggregateType("Ledger", func() *Ledger { return new(Ledger) },
		flux.EventType[Booked]("Booked", 1),
		flux.Snapshots(flux.SnapshotPolicy{Every: 10, Keep: 2}),
	))
	if err != nil {
		panic(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg})
	if err != nil {
		panic(err)
	}

	l := new(Ledger)
	l.SetID("ledger-1")
	for i := 1; i <= 25; i++ {
		flux.Raise(l, Booked{Amount: i})
		_ = repo.Save(ctx, l) // one event per save: snapshots at 10 and 20
	}
	loaded, _ := flux.Load[*Ledger](ctx, repo, "ledger-1")
	info := loaded.LoadInfo()
	fmt.Printf("balance %d at version %d: snapshot %d + %d events replayed\n",
		loaded.Balance, loaded.Version(), info.SnapshotVersion, info.EventsReplayed)
	// Output: balance 325 at version 25: snapshot 20 + 5 events replayed
}

// Upcasters turn old stored versions into the current shape on every read;
// the stored events never change.
func ExampleUpcast() {
	type UserRegisteredV2 struct {
		Email       string `json:"email"`
		PhoneNumber string `json:"phoneNumber"`
	}
	reg, err := flux.NewRegistry(flux.AggregateType("Ledger", func() *Ledger { return new(Ledger) },
		flux.EventType[UserRegisteredV2]("UserRegistered", 2,
			// v1 had no phone number: default it.
			flux.Upcast(1, func(p *flux.Payload) error { return p.SetDefault("phoneNumber", "") }),
		),
	))
	if err != nil {
		fmt.Println(err)
		return
	}
	old := flux.Record{StreamID: "u1", StreamVersion: 1, EventName: "UserRegistered", EventVersion: 1,
		Payload: []byte(`{"email":"ada@example.com"}`)}
	ev, _ := reg.Decode(&old)
	fmt.Printf("%+v\n", ev)
	// Output: {Email:ada@example.com PhoneNumber:}
}
