package sqlitestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

type NoteTaken struct {
	Text string `json:"text"`
}

type Notebook struct {
	flux.Root
	Notes []string
}

func (n *Notebook) Apply(e any) {
	if t, ok := e.(NoteTaken); ok {
		n.Notes = append(n.Notes, t.Text)
	}
}

// Open creates the database file and its tables on first use; the events
// outlive the store value and the process.
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlitestore-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "events.db")

	reg, err := flux.NewRegistry(flux.AggregateType("Notebook", func() *Notebook { return new(Notebook) },
		flux.EventType[NoteTaken]("NoteTaken", 1),
	))
	if err != nil {
		fmt.Println(err)
		return
	}

	// Write with one store value...
	store, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		panic(err)
	}
	n := new(Notebook)
	n.SetID("notebook-1")
	flux.Raise(n, NoteTaken{Text: "buy milk"})
	flux.Raise(n, NoteTaken{Text: "call Ada"})
	if err := repo.Save(ctx, n); err != nil {
		fmt.Println(err)
		return
	}
	store.Close()

	// ...and read with another, as after a restart.
	store, err = sqlitestore.Open(ctx, path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	repo, err = flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		panic(err)
	}
	loaded, err := flux.Load[*Notebook](ctx, repo, "notebook-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loaded.Notes, "version", loaded.Version())
	// Output: [buy milk call Ada] version 2
}
