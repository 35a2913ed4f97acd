package pii_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// SubscriberJoined marks whose data it carries and which fields are personal.
type SubscriberJoined struct {
	MemberID string `json:"memberId" pii:"subject"`
	Email    string `json:"email" pii:"data"`
	Plan     string `json:"plan"`
}

type Subscriber struct {
	flux.Root
	Email, Plan string
}

func (m *Subscriber) Apply(e any) {
	if j, ok := e.(SubscriberJoined); ok {
		m.Email, m.Plan = j.Email, j.Plan
	}
}

// Personal data is encrypted before it is stored, decrypted on every read,
// and forgotten for good by deleting the subject's key (crypto-shredding).
func ExampleNew() {
	ctx := context.Background()
	store := memstore.New() // keeps the data keys too, like every backend
	// In production: secret, err := pii.SecretFromEnv() (KEY_MANAGEMENT_SECRET).
	protector, err := pii.New(pii.Config{Keys: store, Secret: []byte("an example secret of 32 bytes...")})
	if err != nil {
		fmt.Println(err)
		return
	}
	reg, err := flux.NewRegistry(flux.AggregateType("Subscriber", func() *Subscriber { return new(Subscriber) },
		flux.EventType[SubscriberJoined]("SubscriberJoined", 1),
	))
	if err != nil {
		panic(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Protector: protector})
	if err != nil {
		fmt.Println(err)
		return
	}

	m := new(Subscriber)
	m.SetID("member-1")
	flux.Raise(m, SubscriberJoined{MemberID: "member-1", Email: "ada@example.com", Plan: "gold"})
	if err := repo.Save(ctx, m); err != nil {
		fmt.Println(err)
		return
	}
	for rec, err := range store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		stored := string(rec.Payload)
		fmt.Println("stored in clear:", strings.Contains(stored, "ada@example.com"), "| encrypted:", strings.Contains(stored, "fluxpii:v1:"))
	}
	loaded, _ := flux.Load[*Subscriber](ctx, repo, "member-1")
	fmt.Printf("loaded: %q %q\n", loaded.Email, loaded.Plan)

	report, err := protector.Forget(ctx, "member-1", pii.ForgetOptions{By: "dpo", Reason: "request 42"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("key deleted:", report.KeyDeleted)
	loaded, _ = flux.Load[*Subscriber](ctx, repo, "member-1")
	fmt.Printf("after forgetting: %q %q, forgotten: %v\n", loaded.Email, loaded.Plan, loaded.LoadInfo().Forgotten)
	// Output:
	// stored in clear: false | encrypted: true
	// loaded: "ada@example.com" "gold"
	// key deleted: true
	// after forgetting: "" "gold", forgotten: true
}
