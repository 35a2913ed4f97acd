// Command quickstart is the README's quick start: define events and an
// aggregate, register them, save, load, and load as of an earlier time.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// Events are plain structs, stored as JSON under a stable name and version.
type UserRegistered struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

type UserRenamed struct {
	Name string `json:"name"`
}

// An aggregate embeds flux.Root and applies its events in one method.
type User struct {
	flux.Root
	Email, Name string
}

func (u *User) Apply(event any) {
	switch e := event.(type) {
	case UserRegistered:
		u.Email, u.Name = e.Email, e.Name
	case UserRenamed:
		u.Name = e.Name
	}
}

// Behaviour checks the rules, then raises events (which Apply at once).
func (u *User) Rename(name string) {
	if name != u.Name {
		flux.Raise(u, UserRenamed{Name: name})
	}
}

func main() {
	if err := run(context.Background(), "flux.db"); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, path string) error {
	registry, err := flux.NewRegistry(
		flux.AggregateType("User", func() *User { return new(User) },
			flux.EventType[UserRegistered]("UserRegistered", 1),
			flux.EventType[UserRenamed]("UserRenamed", 1),
		),
	)
	if err != nil {
		return err
	}
	store, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: registry})
	if err != nil {
		return err
	}

	// Create and save.
	user := new(User)
	user.SetID("user-" + time.Now().Format("150405.000000"))
	flux.Raise(user, UserRegistered{Email: "ada@example.com", Name: "Ada"})
	if err := repo.Save(ctx, user); err != nil {
		return err
	}
	registered := time.Now()

	// Change and save again.
	user.Rename("Ada Lovelace")
	if err := repo.Save(ctx, user); err != nil {
		return err
	}

	// Load now, and as the user was right after registering.
	now, err := flux.Load[*User](ctx, repo, user.ID())
	if err != nil {
		return err
	}
	then, err := flux.LoadAt[*User](ctx, repo, user.ID(), registered)
	if err != nil {
		return err
	}
	fmt.Printf("now: %s (version %d), then: %s (version %d)\n", now.Name, now.Version(), then.Name, then.Version())
	return nil
}
