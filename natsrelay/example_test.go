package natsrelay_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go"
)

type UserRegistered struct {
	Name string `json:"name"`
}

type User struct{ flux.Root }

func (*User) Apply(any) {}

// The relay runs in a projection.Runner beside the application's other
// projections. It needs a NATS server with JetStream, so this example is
// compiled but not run.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// The application's store and repository (sqlitestore, pgstore or
	// mysqlstore in production; each keeps checkpoints too).
	store := memstore.New()
	reg, err := flux.NewRegistry(flux.AggregateType("User", func() *User { return new(User) },
		flux.EventType[UserRegistered]("UserRegistered", 1)))
	if err != nil {
		log.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		log.Fatal(err)
	}

	// A connection of the relay's own: it reconnects forever and buffers
	// nothing while reconnecting.
	nc, err := nats.Connect(nats.DefaultURL, natsrelay.ConnOptions()...)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// Defaults: stream "FLUX" capturing "flux.>" (created if missing),
	// duplicate window 2 minutes, checkpoint "natsrelay".
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: store})
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.EnsureStream(ctx); err != nil {
		log.Fatal(err)
	}
	runner, err := relay.NewRunner(projection.RunnerConfig{Repository: repo})
	if err != nil {
		log.Fatal(err)
	}
	// runner.Add(otherProjection) ...

	// A user registered now reaches JetStream on flux.User.UserRegistered.
	if err := runner.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Every event travels on prefix.<aggregate type>.<event name>, each name
// mapped to one subject token.
func ExampleSubject() {
	fmt.Println(natsrelay.Subject("flux", "User", "UserRegistered"))
	fmt.Println(natsrelay.Subject("acme.events", "Budget Envelope", "credited.v2"))
	// A consumer of every User event subscribes to:
	fmt.Println("flux." + natsrelay.Token("User") + ".>")
	// Output:
	// flux.User.UserRegistered
	// acme.events.Budget_Envelope.credited_v2
	// flux.User.>
}

// Application metadata keys (flux.WithMetadata) travel as prefixed headers.
func ExampleMetadataHeader() {
	fmt.Println(natsrelay.MetadataHeader("traceparent"))
	fmt.Println(natsrelay.MetadataHeader("tenant id"))
	// Output:
	// Flux-Meta-traceparent
	// Flux-Meta-tenant%20id
}

// New reports every problem of a configuration at once.
func ExampleNew_invalidConfig() {
	_, err := natsrelay.New(natsrelay.Config{SubjectPrefix: "flux.*"})
	fmt.Println(err)
	// Output:
	// natsrelay: invalid config: neither Config.JetStream nor Config.Conn is set; pass a jetstream.JetStream or a *nats.Conn opened with natsrelay.ConnOptions()
	// natsrelay: invalid config: Config.Checkpoints is nil; pass the event store (it implements projection.CheckpointStore)
	// natsrelay: invalid config: Config.SubjectPrefix "flux.*" token 2 "*" holds '*', which a subject prefix may not (no wildcards, white space or control characters)
}
