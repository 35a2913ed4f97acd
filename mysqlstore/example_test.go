package mysqlstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
)

// Funded is an event; Envelope an aggregate.
type Funded struct {
	Cents int64 `json:"cents"`
}

type Envelope struct {
	flux.Root
	Cents int64
}

func (e *Envelope) Apply(event any) {
	if f, ok := event.(Funded); ok {
		e.Cents += f.Cents
	}
}

// Open a store on MySQL or MariaDB, build a repository over it, save an
// aggregate and load it back. The example needs a server, so it is
// compiled but not run by go test.
func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Open creates the tables on first use (Migrate) and forces the DSN
	// settings the store relies on (parseTime, loc=UTC, interpolateParams).
	store, err := mysqlstore.Open(ctx, "flux:secret@tcp(127.0.0.1:3306)/budget", &mysqlstore.Options{
		MaxOpenConns: 20, // default 10
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, flux.ErrStoreUnavailable) when the server is unreachable
	}
	defer store.Close()

	reg, err := flux.NewRegistry(flux.AggregateType("Envelope", func() *Envelope { return new(Envelope) },
		flux.EventType[Funded]("Funded", 1)))
	if err != nil {
		log.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		log.Fatal(err)
	}

	env := new(Envelope)
	env.SetID("groceries")
	flux.Raise(env, Funded{Cents: 25_000})
	if err := repo.Save(ctx, env); err != nil {
		log.Fatal(err) // a *flux.ConflictError if another writer saved first
	}

	loaded, err := flux.Load[*Envelope](ctx, repo, "groceries")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(loaded.Cents)
}
