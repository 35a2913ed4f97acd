package flux_test

import (
	"context"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// BenchmarkUpcast compares reading a stored v1 event through the two-step
// upcaster chain (with a rename) against decoding a current v3 event of the
// same content. Target: upcast ≤ 1.5× the baseline's time (ratio ≥ 0.67).
//
//	go test -run '^$' -bench Upcast -count 6 . | go run ./internal/benchratio
func BenchmarkUpcast(b *testing.B) {
	reg := personRegistry(b)
	current := flux.Record{StreamID: "p", StreamVersion: 1, EventName: "PersonSignedUp", EventVersion: 3,
		Payload: []byte(`{"email":"ada@example.com","firstName":"Ada","lastName":"Lovelace","phoneNumber":"+44 20 7946 0000"}`)}
	v1 := flux.Record{StreamID: "p", StreamVersion: 1, EventName: "UserRegistered", EventVersion: 1,
		Payload: []byte(`{"email":"ada@example.com","name":"Ada Lovelace","phoneNumber":"+44 20 7946 0000"}`)}
	run := func(rec flux.Record) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := reg.Decode(&rec); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("baseline", run(current))
	b.Run("upcast-2-steps", run(v1))
}

type noopObserver struct{}

func (noopObserver) Start(ctx context.Context, _ flux.Operation) (context.Context, func(flux.Outcome)) {
	return ctx, func(flux.Outcome) {}
}
func (noopObserver) Notice(context.Context, flux.Notice)             { _ = 0 }
func (noopObserver) TraceMetadata(context.Context) map[string]string { return nil }

// BenchmarkObserverOverhead saves and loads through a memstore — the
// framework's own cost, with no database to hide it — without an observer
// (the baseline: hooks are a nil check) and with a no-op observer (what the
// hooks cost when an observer is set). Both should be within noise.
//
//	go test -run '^$' -bench ObserverOverhead -count 8 . | go run ./internal/benchratio
func BenchmarkObserverOverhead(b *testing.B) {
	for _, v := range []struct {
		name string
		obs  flux.Observer
	}{{"baseline", nil}, {"noop-observer", noopObserver{}}} {
		b.Run(v.name, func(b *testing.B) {
			repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: counterRegistry(b, &flux.SnapshotPolicy{Disabled: true}, false), Observer: v.obs})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			c := new(Counter)
			c.SetID("c")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				flux.Raise(c, Added{N: 1})
				if err := repo.Save(ctx, c); err != nil {
					b.Fatal(err)
				}
				if i%10 == 0 {
					if _, err := flux.LoadVersion[*Counter](ctx, repo, "c", 5); i > 10 && err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
