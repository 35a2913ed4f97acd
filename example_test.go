package flux_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// Events are plain structs. Their stored names ("UserRegistered") are set
// at registration and never depend on the Go type name.
type UserRegistered struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

type UserRenamed struct {
	Name string `json:"name"`
}

// User is an aggregate: a struct embedding flux.Root, with an Apply method.
type User struct {
	flux.Root
	Email string
	Name  string
}

// RegisterUser creates a user by raising its first event.
func RegisterUser(id, email, name string) (*User, error) {
	if email == "" {
		return nil, errors.New("email is required")
	}
	u := new(User)
	u.SetID(id)
	flux.Raise(u, UserRegistered{Email: email, Name: name})
	return u, nil
}

// Rename checks the rule, then raises the fact.
func (u *User) Rename(name string) error {
	if name == u.Name {
		return nil // nothing happened, nothing to record
	}
	flux.Raise(u, UserRenamed{Name: name})
	return nil
}

// Apply changes state; it runs on Raise and on every load.
func (u *User) Apply(event any) {
	switch e := event.(type) {
	case UserRegistered:
		u.Email, u.Name = e.Email, e.Name
	case UserRenamed:
		u.Name = e.Name
	}
}

func newRegistry() *flux.Registry {
	reg, err := flux.NewRegistry(
		flux.AggregateType("User", func() *User { return new(User) },
			flux.EventType[UserRegistered]("UserRegistered", 1),
			flux.EventType[UserRenamed]("UserRenamed", 1),
		),
	)
	if err != nil {
		panic(err)
	}
	return reg
}

// steppingClock returns a clock that starts at start and moves one hour
// forward every time it is read, so examples print stable times.
func steppingClock(start time.Time) func() time.Time {
	t := start.Add(-time.Hour)
	return func() time.Time {
		t = t.Add(time.Hour)
		return t
	}
}

// Define an aggregate and its events, register them, save and load.
func Example() {
	ctx := context.Background()
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: newRegistry()})
	if err != nil {
		fmt.Println(err)
		return
	}

	user, err := RegisterUser("user-1", "ada@example.com", "Ada")
	if err != nil {
		panic(err)
	}
	_ = user.Rename("Ada Lovelace")
	if err := repo.Save(ctx, user); err != nil {
		fmt.Println(err)
		return
	}

	loaded, err := flux.Load[*User](ctx, repo, "user-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loaded.Name, loaded.Email, "version", loaded.Version())
	// Output: Ada Lovelace ada@example.com version 2
}

// Save several aggregates in one atomic transaction.
func ExampleRepository_Save() {
	ctx := context.Background()
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: newRegistry()})
	if err != nil {
		panic(err)
	}

	ada, err := RegisterUser("user-1", "ada@example.com", "Ada")
	if err != nil {
		panic(err)
	}
	bob, err := RegisterUser("user-2", "bob@example.com", "Bob")
	if err != nil {
		panic(err)
	}
	if err := repo.Save(ctx, ada, bob); err != nil {
		fmt.Println(err)
		return
	}
	for e, err := range repo.AllEvents(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.Position, e.StreamID, e.EventName, e.Event.(UserRegistered).Name)
	}
	// Output:
	// 1 user-1 UserRegistered Ada
	// 2 user-2 UserRegistered Bob
}

// Rebuild an aggregate as it was at an earlier moment.
func ExampleLoadAt() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	repo, err := flux.NewRepository(flux.Config{
		Store:    memstore.New(),
		Registry: newRegistry(),
		Clock:    steppingClock(start), // 09:00, 10:00, 11:00...
	})
	if err != nil {
		panic(err)
	}

	user, err := RegisterUser("user-1", "ada@example.com", "Ada")
	if err != nil {
		panic(err)
	}
	_ = repo.Save(ctx, user) // at 09:00
	_ = user.Rename("Ada Byron")
	_ = repo.Save(ctx, user) // at 10:00
	_ = user.Rename("Ada Lovelace")
	_ = repo.Save(ctx, user) // at 11:00

	at := start.Add(90 * time.Minute) // 10:30
	then, _ := flux.LoadAt[*User](ctx, repo, "user-1", at)
	now, _ := flux.Load[*User](ctx, repo, "user-1")
	fmt.Printf("at 10:30: %s (version %d)\n", then.Name, then.Version())
	fmt.Printf("now:      %s (version %d)\n", now.Name, now.Version())

	_, err = flux.LoadAt[*User](ctx, repo, "user-1", start.Add(-time.Minute))
	fmt.Println("before it existed:", errors.Is(err, flux.ErrAggregateNotFound))
	// Output:
	// at 10:30: Ada Byron (version 2)
	// now:      Ada Lovelace (version 3)
	// before it existed: true
}

// Two writers change the same aggregate: the second save is rejected with a
// ConflictError, and reloading gives the writer the winner's state.
func ExampleConflictError() {
	ctx := context.Background()
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: newRegistry()})
	if err != nil {
		panic(err)
	}
	user, err := RegisterUser("user-1", "ada@example.com", "Ada")
	if err != nil {
		panic(err)
	}
	_ = repo.Save(ctx, user)

	first, _ := flux.Load[*User](ctx, repo, "user-1")
	second, _ := flux.Load[*User](ctx, repo, "user-1")
	_ = first.Rename("Ada Byron")
	_ = second.Rename("Countess of Lovelace")
	fmt.Println("first save:", repo.Save(ctx, first))

	err = repo.Save(ctx, second)
	var conflict *flux.ConflictError
	if errors.As(err, &conflict) {
		fmt.Printf("second save: conflict on %s, expected version %v, actual %d\n",
			conflict.StreamID, conflict.Expected, conflict.Actual)
	}
	fmt.Println("matches sentinel:", errors.Is(err, flux.ErrConcurrencyConflict))

	// Retry: reload, re-apply the command, save.
	second, _ = flux.Load[*User](ctx, repo, "user-1")
	_ = second.Rename("Countess of Lovelace")
	fmt.Println("retry:", repo.Save(ctx, second), "version", second.Version())
	// Output:
	// first save: <nil>
	// second save: conflict on user-1, expected version 1, actual 2
	// matches sentinel: true
	// retry: <nil> version 3
}

// Read one stream's events filtered by type and time, streamed one by one.
func ExampleRepository_Events() {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: newRegistry(), Clock: steppingClock(start)})
	if err != nil {
		panic(err)
	}
	user, err := RegisterUser("user-1", "ada@example.com", "Ada")
	if err != nil {
		panic(err)
	}
	_ = repo.Save(ctx, user)
	for _, name := range []string{"Ada Byron", "Ada King", "Ada Lovelace"} {
		_ = user.Rename(name)
		_ = repo.Save(ctx, user)
	}

	opts := &flux.EventsOptions{Types: []any{UserRenamed{}}, Since: start.Add(2 * time.Hour)}
	for e, err := range repo.Events(ctx, "user-1", opts) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.StreamVersion, e.OccurredAt.Format("15:04"), e.Event.(UserRenamed).Name)
	}
	// Output:
	// 3 11:00 Ada King
	// 4 12:00 Ada Lovelace
}
