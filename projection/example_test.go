package projection_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/projection"
)

type ItemOrdered struct {
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

type Order struct{ flux.Root }

func (*Order) Apply(any) {}

// A projection turns the global log into a read model; the runner keeps
// its checkpoint in the store and can rebuild it from the start.
func ExampleNewRunner() {
	ctx := context.Background()
	reg, err := flux.NewRegistry(flux.AggregateType("Order", func() *Order { return new(Order) },
		flux.EventType[ItemOrdered]("ItemOrdered", 1),
	))
	if err != nil {
		panic(err)
	}
	store := memstore.New() // also the checkpoint store
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		panic(err)
	}
	for i, item := range []string{"tea", "cake", "tea"} {
		o := new(Order)
		o.SetID(fmt.Sprintf("order-%d", i+1))
		flux.Raise(o, ItemOrdered{Item: item, Quantity: i + 1})
		_ = repo.Save(ctx, o)
	}

	// The read model: quantities ordered per item.
	var mu sync.Mutex
	totals := map[string]int{}
	p := projection.New("item-totals", func(ctx context.Context, e flux.Envelope) error {
		o := e.Event.(ItemOrdered)
		mu.Lock()
		defer mu.Unlock()
		totals[o.Item] += o.Quantity
		return nil
	},
		projection.Events("ItemOrdered"),
		projection.OnReset(func(ctx context.Context) error { clear(totals); return nil }),
	)

	runner, err := projection.NewRunner(projection.RunnerConfig{Repository: repo})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := runner.Add(p); err != nil {
		fmt.Println(err)
		return
	}
	// Rebuild replays the log up to its head, here and now; runner.Run(ctx)
	// would follow the log live until ctx ends.
	if err := runner.Rebuild(ctx, "item-totals", projection.ReplayOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("tea:", totals["tea"], "cake:", totals["cake"])

	statuses, _ := runner.Status(ctx)
	for _, s := range statuses {
		fmt.Printf("%s at position %d of %d\n", s.Name, s.Position, s.Head)
	}
	// Output:
	// tea: 4 cake: 2
	// item-totals at position 3 of 3
}
