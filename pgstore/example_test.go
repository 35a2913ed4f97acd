package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Envelope is a budget envelope, the aggregate of the examples.
type Envelope struct {
	flux.Root
	Name    string
	Balance int64
}

type EnvelopeCreated struct {
	Name string `json:"name"`
}

type EnvelopeCredited struct {
	Cents int64 `json:"cents"`
}

func (e *Envelope) Apply(event any) {
	switch ev := event.(type) {
	case EnvelopeCreated:
		e.Name = ev.Name
	case EnvelopeCredited:
		e.Balance += ev.Cents
	}
}

func envelopeRegistry() *flux.Registry {
	reg, err := flux.NewRegistry(flux.AggregateType("Envelope", func() *Envelope { return new(Envelope) },
		flux.EventType[EnvelopeCreated]("EnvelopeCreated", 1),
		flux.EventType[EnvelopeCredited]("EnvelopeCredited", 1),
	))
	if err != nil {
		log.Fatal(err)
	}
	return reg
}

// Open a store from a DSN (it creates its tables on first use), build a
// repository on it, save an aggregate and load it back. The example needs a
// PostgreSQL server, so it has no Output and only runs by hand:
//
//	FLUX_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test -run Example -v
func Example() {
	dsn := os.Getenv("FLUX_TEST_POSTGRES_DSN")
	if dsn == "" {
		fmt.Println("set FLUX_TEST_POSTGRES_DSN to run this example against PostgreSQL")
		return
	}
	ctx := context.Background()
	store, err := pgstore.Open(ctx, dsn, &pgstore.Options{Schema: "flux_example"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: envelopeRegistry()})
	if err != nil {
		log.Fatal(err)
	}

	groceries := new(Envelope)
	groceries.SetID(fmt.Sprintf("envelope-%d", os.Getpid()))
	flux.Raise(groceries, EnvelopeCreated{Name: "Groceries"})
	flux.Raise(groceries, EnvelopeCredited{Cents: 25000})
	if err := repo.Save(ctx, groceries); err != nil {
		log.Fatal(err)
	}

	loaded, err := flux.Load[*Envelope](ctx, repo, groceries.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(loaded.Name, loaded.Balance, loaded.Version())
}

// New puts a store on a pool the application already has; the store leaves
// the pool open when it is closed. Each schema is an independent store.
func ExampleNew() {
	dsn := os.Getenv("FLUX_TEST_POSTGRES_DSN")
	if dsn == "" {
		fmt.Println("set FLUX_TEST_POSTGRES_DSN to run this example against PostgreSQL")
		return
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, &pgstore.Options{Schema: "flux_example_tenant_a"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	head, err := store.Head(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("events in the log:", head)
}
