package sqlitestore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/pii/piitest"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// plainPerson is piitest.Person without personal-data marks.
type plainPerson struct {
	flux.Root
	Email string `json:"email"`
	Name  string `json:"name"`
}

type plainProfile struct {
	UserID string `json:"userId"`
	Email  string `json:"email"`
	Name   string `json:"name"`
}

type plainRenamed struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

func (p *plainPerson) Apply(e any) {
	switch e := e.(type) {
	case plainProfile:
		p.Email, p.Name = e.Email, e.Name
	case plainRenamed:
		p.Name = e.Name
	}
}
func (p *plainPerson) SnapshotState() any                           { return p }
func (p *plainPerson) RestoreSnapshot(decode func(any) error) error { return decode(p) }

// BenchmarkLoad10kFromSnapshot loads a 10,000-event aggregate from its
// snapshot (taken at its last event), with personal data in its events
// and snapshot (encrypted; warm key cache, as in a running application)
// against the same aggregate without personal data ("baseline").
//
//	go test -run '^$' -bench Load10kFromSnapshot -count 6 ./sqlitestore | go run ./internal/benchratio
func BenchmarkLoad10kFromSnapshot(b *testing.B) {
	const events, batch = 10_000, 1_000
	policy := flux.Snapshots(flux.SnapshotPolicy{Every: batch})
	for _, personal := range []bool{false, true} {
		name := "baseline"
		if personal {
			name = "personal-data"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := sqlitestore.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cfg := flux.Config{Store: s}
			var def flux.Definition
			if personal {
				def = flux.AggregateType("Person", func() *piitest.Person { return new(piitest.Person) },
					flux.EventType[piitest.Profile]("Profile", 1), flux.EventType[piitest.Renamed]("Renamed", 1), policy)
				if cfg.Protector, err = pii.New(pii.Config{Keys: s, Secret: []byte(forgetSecret)}); err != nil {
					b.Fatal(err)
				}
			} else {
				def = flux.AggregateType("Person", func() *plainPerson { return new(plainPerson) },
					flux.EventType[plainProfile]("Profile", 1), flux.EventType[plainRenamed]("Renamed", 1), policy)
			}
			if cfg.Registry, err = flux.NewRegistry(def); err != nil {
				b.Fatal(err)
			}
			repo, err := flux.NewRepository(cfg)
			if err != nil {
				b.Fatal(err)
			}
			const id = "p1"
			for v := 0; v < events; v += batch {
				var a flux.Aggregate
				if v == 0 {
					if personal {
						p := new(piitest.Person)
						p.SetID(id)
						flux.Raise(p, piitest.Profile{UserID: id, Email: "ada@example.com", Name: "Ada"})
						a = p
					} else {
						p := new(plainPerson)
						p.SetID(id)
						flux.Raise(p, plainProfile{UserID: id, Email: "ada@example.com", Name: "Ada"})
						a = p
					}
				} else if personal {
					a, _ = flux.Load[*piitest.Person](ctx, repo, id)
				} else {
					a, _ = flux.Load[*plainPerson](ctx, repo, id)
				}
				for i := a.(interface{ Version() int64 }).Version(); i < int64(v+batch); i++ {
					name := fmt.Sprintf("Ada %d", i)
					if personal {
						flux.Raise(a, piitest.Renamed{UserID: id, Name: name})
					} else {
						flux.Raise(a, plainRenamed{UserID: id, Name: name})
					}
				}
				if err := repo.Save(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
			load := func() (flux.LoadInfo, error) {
				if personal {
					p, err := flux.Load[*piitest.Person](ctx, repo, id)
					return p.LoadInfo(), err
				}
				p, err := flux.Load[*plainPerson](ctx, repo, id)
				return p.LoadInfo(), err
			}
			info, err := load()
			if err != nil || info.SnapshotVersion != events {
				b.Fatalf("load: %+v, %v (want a snapshot at %d)", info, err, events)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := load(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
