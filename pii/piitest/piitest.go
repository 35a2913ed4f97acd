// Package piitest checks that a backend never holds personal data in clear:
// canary strings go in as personal data through events, snapshots and the
// global log; every table of the backend is dumped and searched before and
// after the subjects are forgotten.
package piitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

// Harness describes the backend under test.
type Harness struct {
	// New returns a fresh, isolated store implementing flux.SnapshotStore
	// and pii.KeyStore, cleaned up with t.Cleanup.
	New func(t *testing.T) flux.EventStore
	// Dump returns the contents of every table (or structure) of the
	// store, as text.
	Dump func(t *testing.T, s flux.EventStore) []byte
}

// Profile is an event with personal data of several kinds.
type Profile struct {
	UserID  string   `json:"userId" pii:"subject"`
	Email   string   `json:"email" pii:"data"`
	Name    string   `json:"name" pii:"data"`
	Aliases []string `json:"aliases" pii:"data"`
	Address struct {
		Street string `json:"street" pii:"data"`
		Marker string `json:"marker"`
	} `json:"address"`
	Marker string `json:"marker"` // not personal: proves the dump sees payloads
}

// Renamed changes the name.
type Renamed struct {
	UserID string `json:"userId" pii:"subject"`
	Name   string `json:"name" pii:"data"`
}

// Person snapshots its personal state every 2 events.
type Person struct {
	flux.Root
	Email string `json:"email" pii:"data"`
	Name  string `json:"name" pii:"data"`
}

// PersonalDataSubject names the person as the subject of its snapshots.
func (p *Person) PersonalDataSubject() string { return p.ID() }

// Apply implements flux.Aggregate.
func (p *Person) Apply(e any) {
	switch e := e.(type) {
	case Profile:
		p.Email, p.Name = e.Email, e.Name
	case Renamed:
		p.Name = e.Name
	}
}

// SnapshotState implements flux.Snapshotter.
func (p *Person) SnapshotState() any { return p }

// RestoreSnapshot implements flux.Snapshotter.
func (p *Person) RestoreSnapshot(decode func(any) error) error { return decode(p) }

const secret = "piitest-secret-0123456789abcdefgh"

func canary(subject, what string) string { return "CANARY-" + what + "-" + subject }

// Run runs the canary test.
func Run(t *testing.T, h Harness) {
	t.Helper()
	ctx := context.Background()
	s := h.New(t)
	keys, ok := s.(pii.KeyStore)
	if !ok {
		t.Fatalf("store %T does not implement pii.KeyStore", s)
	}
	reg, err := flux.NewRegistry(flux.AggregateType("Person", func() *Person { return new(Person) },
		flux.EventType[Profile]("Profile", 1),
		flux.EventType[Renamed]("Renamed", 1),
		flux.Snapshots(flux.SnapshotPolicy{Every: 2, Keep: 5}),
	))
	if err != nil {
		t.Fatal(err)
	}
	newRepo := func() (*flux.Repository, *pii.Protector) {
		prot, err := pii.New(pii.Config{Keys: keys, Secret: []byte(secret), Replacement: "[forgotten]"})
		if err != nil {
			t.Fatal(err)
		}
		repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg, Protector: prot})
		if err != nil {
			t.Fatal(err)
		}
		return repo, prot
	}
	repo, prot := newRepo()
	subjects := []string{"alice-1", "bob-2", "carol-3"}
	const keeper = "keeper-9"
	for _, subj := range append(subjects, keeper) {
		p := new(Person)
		p.SetID(subj)
		ev := Profile{UserID: subj, Email: canary(subj, "email") + "@example.com", Name: canary(subj, "name"),
			Aliases: []string{canary(subj, "alias")}, Marker: "CONTROL-" + subj}
		ev.Address.Street = canary(subj, "street")
		ev.Address.Marker = "CONTROL-ADDR-" + subj
		flux.Raise(p, ev)
		flux.Raise(p, Renamed{UserID: subj, Name: canary(subj, "rename1")})
		if err := repo.Save(ctx, p); err != nil { // snapshot at 2
			t.Fatal(err)
		}
		flux.Raise(p, Renamed{UserID: subj, Name: canary(subj, "rename2")})
		flux.Raise(p, Renamed{UserID: subj, Name: canary(subj, "rename3")})
		if err := repo.Save(ctx, p); err != nil { // snapshot at 4
			t.Fatal(err)
		}
	}
	// The global log, read as a projection would.
	n := 0
	for e, err := range repo.AllEvents(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := e.Event.(Renamed); ok && !bytes.HasPrefix([]byte(r.Name), []byte("CANARY-rename")) {
			t.Fatalf("global log decoded %+v", r)
		}
		n++
	}
	if n != 16 {
		t.Fatalf("global log has %d events, want 16", n)
	}

	check := func(phase string) {
		t.Helper()
		dump := h.Dump(t, s)
		for _, subj := range append(subjects, keeper) {
			if !bytes.Contains(dump, []byte("CONTROL-"+subj)) || !bytes.Contains(dump, []byte("CONTROL-ADDR-"+subj)) {
				t.Fatalf("%s: the dump does not contain the unmarked control value of %s: it does not cover the events table", phase, subj)
			}
		}
		if hits := bytes.Count(dump, []byte("CANARY")); hits != 0 {
			i := bytes.Index(dump, []byte("CANARY"))
			t.Fatalf("%s: %d canary values in clear in the backend's tables, e.g. near %q", phase, hits, dump[max(0, i-40):min(len(dump), i+40)])
		}
		// 4 people × (4 values in Profile + 3 renames + 2 snapshots × 2 fields)
		if bytes.Count(dump, []byte(pii.EnvelopePrefix)) < 4*(4+3+2*2) {
			t.Fatalf("%s: the dump has too few encrypted values; does it cover events and snapshots?", phase)
		}
	}
	check("before forgetting")

	for _, subj := range subjects {
		if _, err := prot.Forget(ctx, subj, pii.ForgetOptions{By: "piitest"}); err != nil {
			t.Fatal(err)
		}
	}
	check("after forgetting")

	// A cold protector (another process): no forgotten value decrypts,
	// every aggregate still loads, the keeper is intact.
	cold, _ := newRepo()
	for _, subj := range subjects {
		if _, err := keys.LoadKey(ctx, subj); !errors.Is(err, pii.ErrForgotten) {
			t.Fatalf("key of %s after forgetting: %v", subj, err)
		}
		p, err := flux.Load[*Person](ctx, cold, subj)
		if err != nil {
			t.Fatalf("load %s after forgetting: %v", subj, err)
		}
		if p.Email != "[forgotten]" || p.Name != "[forgotten]" || !p.LoadInfo().Forgotten {
			t.Fatalf("%s after forgetting = %+v %+v", subj, p, p.LoadInfo())
		}
		for e, err := range cold.Events(ctx, subj, nil) {
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprintf("%+v", e.Event); bytes.Contains([]byte(s), []byte("CANARY")) || len(e.Forgotten) == 0 {
				t.Fatalf("%s event %d decrypted after forgetting: %s", subj, e.StreamVersion, s)
			}
		}
	}
	p, err := flux.Load[*Person](ctx, cold, keeper)
	if err != nil || p.Name != canary(keeper, "rename3") || p.LoadInfo().Forgotten {
		t.Fatalf("keeper = %+v, %v", p, err)
	}
}
