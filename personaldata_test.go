package flux_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// The seed's shape: personal data in the events, a state struct without tags.
type SeedUserRegistered struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
}

type SeedUserState struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

type SeedUser struct {
	flux.Root
	State SeedUserState
}

func (u *SeedUser) Apply(e any) {
	if e, ok := e.(SeedUserRegistered); ok {
		u.State = SeedUserState{Email: e.Email, Name: e.Name}
	}
}
func (u *SeedUser) SnapshotState() any                           { return &u.State }
func (u *SeedUser) RestoreSnapshot(decode func(any) error) error { return decode(&u.State) }

func seedRegistry(t *testing.T, policy flux.SnapshotPolicy) *flux.Registry {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("User", func() *SeedUser { return new(SeedUser) },
		flux.EventType[SeedUserRegistered]("UserRegistered", 1), flux.Snapshots(policy)))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestUntaggedSnapshotStateIsRefusedAtStartUp(t *testing.T) {
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = flux.NewRepository(flux.Config{Store: store, Registry: seedRegistry(t, flux.SnapshotPolicy{Every: 2}), Protector: prot})
	if err == nil {
		t.Fatal("NewRepository accepted a snapshot state that would store the email in clear")
	}
	for _, want := range []string{`aggregate "User"`, "snapshot state", "field email", "event UserRegistered field email", "pii:\"data\"", "NoPersonalData"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	// The named opt-out starts (its doc says what it costs).
	if _, err := flux.NewRepository(flux.Config{Store: store, Registry: seedRegistry(t, flux.SnapshotPolicy{Every: 2, NoPersonalData: true}), Protector: prot}); err != nil {
		t.Fatalf("NoPersonalData opt-out: %v", err)
	}
}

// TaggedUser tags its state, so snapshots are encrypted.
type TaggedUser struct {
	flux.Root
	Email string `json:"email" pii:"data"`
	Name  string `json:"name" pii:"data"`
}

func (u *TaggedUser) PersonalDataSubject() string { return u.ID() }
func (u *TaggedUser) Apply(e any) {
	if e, ok := e.(SeedUserRegistered); ok {
		u.Email, u.Name = e.Email, e.Name
	}
}
func (u *TaggedUser) SnapshotState() any                           { return u }
func (u *TaggedUser) RestoreSnapshot(decode func(any) error) error { return decode(u) }

func TestForgetReachesSnapshotsAndReplays(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte("0123456789abcdef0123456789abcdef"), Replacement: "[gone]"})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := flux.NewRegistry(flux.AggregateType("User", func() *TaggedUser { return new(TaggedUser) },
		flux.EventType[SeedUserRegistered]("UserRegistered", 1), flux.Snapshots(flux.SnapshotPolicy{Every: 1})))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Protector: prot})
	if err != nil {
		t.Fatal(err)
	}
	u := new(TaggedUser)
	u.SetID("u1")
	flux.Raise(u, SeedUserRegistered{UserID: "u1", Email: "ada@canary.example", Name: "Ada"})
	if err := repo.Save(ctx, u); err != nil {
		t.Fatal(err)
	}
	sn, found, err := store.LoadSnapshot(ctx, "u1", flux.SnapshotQuery{SchemaVersion: 1})
	if err != nil || !found || strings.Contains(string(sn.Data), "canary") || strings.Contains(string(sn.Data), "Ada") {
		t.Fatalf("snapshot = %s, %v, %v", sn.Data, found, err)
	}
	rep, err := prot.Forget(ctx, "u1", pii.ForgetOptions{By: "test"})
	if err != nil || !rep.KeyDeleted || !rep.Signalled {
		t.Fatalf("Forget = %+v, %v", rep, err)
	}
	fromSnapshot, err := flux.Load[*TaggedUser](ctx, repo, "u1")
	if err != nil || fromSnapshot.Email != "[gone]" || !fromSnapshot.LoadInfo().Forgotten || fromSnapshot.LoadInfo().SnapshotVersion == 0 {
		t.Fatalf("from snapshot: %+v %+v, %v", fromSnapshot, fromSnapshot.LoadInfo(), err)
	}
	replayed, err := flux.LoadVersion[*TaggedUser](ctx, repo, "u1", 1)
	if err != nil || replayed.Email != "[gone]" || !replayed.LoadInfo().Forgotten {
		t.Fatalf("replayed: %+v, %v", replayed, err)
	}
	// No new personal data for a forgotten subject.
	again := new(TaggedUser)
	again.SetID("u1-again")
	flux.Raise(again, SeedUserRegistered{UserID: "u1", Email: "x@canary.example"})
	if err := repo.Save(ctx, again); !errors.Is(err, flux.ErrSubjectForgotten) {
		t.Fatalf("save for a forgotten subject: %v", err)
	}
	// Repeating reports it, and a subject that never had data says so.
	rep, err = prot.Forget(ctx, "u1", pii.ForgetOptions{})
	if err != nil || !rep.AlreadyForgotten || rep.KeyDeleted || !rep.SignalledBefore {
		t.Fatalf("second Forget = %+v, %v", rep, err)
	}
	rep, err = prot.Forget(ctx, "nobody", pii.ForgetOptions{})
	if err != nil || !rep.NoPersonalData || !strings.Contains(rep.String(), `no personal data was held for "nobody"; a tombstone now blocks new data`) {
		t.Fatalf("Forget(nobody) = %+v %q, %v", rep, rep, err)
	}
	// The global log carries one SubjectForgotten per subject.
	n := 0
	for rec, err := range store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if flux.IsSubjectForgotten(&rec) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d SubjectForgotten records, want 2 (u1, nobody)", n)
	}
}
