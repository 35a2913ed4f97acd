// Package piitest checks that a backend never holds personal data in clear:
// canary strings go in as personal data through events, snapshots and the
// global log; every table of the backend is dumped and searched before and
// after the subjects are forgotten.
package piitest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Harness describes the backend under test.
type Harness struct {
	// New returns a fresh, isolated store implementing flux.SnapshotStore
	// and pii.KeyStore, cleaned up with t.Cleanup.
	New func(t *testing.T) flux.EventStore
	// Dump returns the contents of every table (or structure) of the
	// store, as text — with the database's own dump client where there is
	// one (sqlite3 .dump, pg_dump, mysqldump).
	Dump func(t *testing.T, s flux.EventStore) []byte
	// ReadModel, when set, returns a table in the store's database for the
	// canary read model (a projection of the people): its rows must then
	// appear in Dump. Without it the read model is kept in memory and
	// dumped with the rest.
	ReadModel func(t *testing.T, s flux.EventStore) Table
	// Relay, when set, starts relaying the store's global log to a broker
	// (the NATS relay) and returns a function that waits until the broker
	// holds every record up to head and returns all it holds, raw.
	Relay func(t *testing.T, repo *flux.Repository) (read func(head int64) []byte)
}

// Table is a read model table: rows of bytes by ID.
type Table interface {
	Put(ctx context.Context, id string, data []byte) error
	Delete(ctx context.Context, id string) error
}

// memTable is the in-memory Table used without Harness.ReadModel.
type memTable struct {
	mu   sync.Mutex
	rows map[string][]byte
}

func (m *memTable) Put(_ context.Context, id string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[id] = bytes.Clone(data)
	return nil
}

func (m *memTable) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, id)
	return nil
}

func (m *memTable) dump() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b bytes.Buffer
	for id, row := range m.rows {
		fmt.Fprintf(&b, "people_view %s %s\n", id, row)
	}
	return b.Bytes()
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

// Register signs a person up through the command bus (so the logging
// middleware and the idempotency record see the personal data too).
type Register struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
}

// Registered is Register's result, kept by the idempotency record.
type Registered struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
}

// PersonView is a row of the canary read model: personal data stored
// encrypted (pii.Protector.Protect with a scope of its own), and deleted
// on flux.SubjectForgotten.
type PersonView struct {
	UserID string `json:"userId" pii:"subject"`
	Name   string `json:"name" pii:"data"`
}

// clearForms returns the forms in which a canary could appear: in clear,
// hex (both cases) and base64 (standard and URL alphabets, at the three
// byte alignments, keeping only the characters that depend on the canary
// alone).
func clearForms() [][]byte {
	const c = "CANARY-"
	forms := [][]byte{[]byte("CANARY"), []byte(hex.EncodeToString([]byte(c))), []byte(strings.ToUpper(hex.EncodeToString([]byte(c))))}
	for off := 0; off < 3; off++ {
		src := append(make([]byte, off), c...)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString(src)
			from, to := (8*off+5)/6, 8*len(src)/6
			forms = append(forms, []byte(e[from:to]))
		}
	}
	return forms
}

// Run runs the canary test: people with canary values in their personal
// fields are registered through the command bus (with the logging
// middleware and idempotency keys), renamed, snapshotted, projected into a
// read model and relayed; then every table, the broker's stream and the
// captured logs are searched for the canaries in clear, hex and base64 —
// before and after the people are forgotten — and the forgotten people
// must still load, from snapshots and by full replay, with replacement
// values.
func Run(t *testing.T, h Harness) {
	t.Helper()
	ctx := context.Background()
	s := h.New(t)
	keys, ok := s.(pii.KeyStore)
	if !ok {
		t.Fatalf("store %T does not implement pii.KeyStore", s)
	}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	newRepo := func(policy flux.SnapshotPolicy) (*flux.Repository, *pii.Protector) {
		reg, err := flux.NewRegistry(flux.AggregateType("Person", func() *Person { return new(Person) },
			flux.EventType[Profile]("Profile", 1),
			flux.EventType[Renamed]("Renamed", 1),
			flux.Snapshots(policy),
		))
		if err != nil {
			t.Fatal(err)
		}
		prot, err := pii.New(pii.Config{Keys: keys, Secret: []byte(secret), Replacement: "[forgotten]", Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg, Protector: prot, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		return repo, prot
	}
	repo, prot := newRepo(flux.SnapshotPolicy{Every: 2, Keep: 5})
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo, Middleware: []flux.Middleware{flux.Logging(logger)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleCommandResult(bus, func(ctx context.Context, c Register) (Registered, error) {
		p := new(Person)
		p.SetID(c.UserID)
		ev := Profile{UserID: c.UserID, Email: c.Email, Name: c.Name,
			Aliases: []string{canary(c.UserID, "alias")}, Marker: "CONTROL-" + c.UserID}
		ev.Address.Street = canary(c.UserID, "street")
		ev.Address.Marker = "CONTROL-ADDR-" + c.UserID
		flux.Raise(p, ev)
		flux.Raise(p, Renamed{UserID: c.UserID, Name: canary(c.UserID, "rename1")})
		if err := flux.Track(ctx, p); err != nil { // saved with a snapshot at 2
			return Registered{}, err
		}
		return Registered{UserID: c.UserID, Email: c.Email}, nil
	}); err != nil {
		t.Fatal(err)
	}

	// The read model: a projection into a table of the store's database.
	var table Table
	mem := &memTable{rows: map[string][]byte{}}
	if h.ReadModel != nil {
		table = h.ReadModel(t, s)
	} else {
		table = mem
	}
	views := projection.New("piitest-people", func(ctx context.Context, e flux.Envelope) error {
		var v PersonView
		switch ev := e.Event.(type) {
		case flux.SubjectForgotten:
			return table.Delete(ctx, ev.Subject)
		case Profile:
			v = PersonView{UserID: ev.UserID, Name: ev.Name}
		case Renamed:
			v = PersonView{UserID: ev.UserID, Name: ev.Name}
		default:
			return nil
		}
		if len(e.Forgotten) > 0 {
			return table.Delete(ctx, v.UserID)
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if data, err = prot.Protect(ctx, v, data, "readmodel:piitest-people:"+v.UserID); err != nil {
			return err
		}
		return table.Put(ctx, v.UserID, data)
	}, projection.AggregateTypes("Person"), projection.Forgetting(), projection.OnReset(func(context.Context) error { return nil }))
	runner, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(views); err != nil {
		t.Fatal(err)
	}
	project := func() {
		t.Helper()
		if err := runner.Rebuild(ctx, "piitest-people", projection.ReplayOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var relayed func(head int64) []byte
	if h.Relay != nil {
		relayed = h.Relay(t, repo)
	}

	subjects := []string{"alice-1", "bob-2", "carol-3"}
	const keeper = "keeper-9"
	for _, subj := range append(subjects, keeper) {
		reg := Register{UserID: subj, Email: canary(subj, "email") + "@example.com", Name: canary(subj, "name")}
		kctx := flux.WithIdempotencyKey(ctx, "register-"+subj)
		if _, err := flux.DispatchResult[Registered](kctx, bus, reg); err != nil {
			t.Fatal(err)
		}
		// A duplicate returns the stored (encrypted) first outcome.
		if r, err := flux.DispatchResult[Registered](flux.WithIdempotencyKey(ctx, "register-"+subj), bus, reg); err != nil || r.Email != reg.Email {
			t.Fatalf("duplicate registration of %s = %+v, %v", subj, r, err)
		}
		// A failing command is logged at level Error, with its error.
		if err := bus.Dispatch(ctx, reg); err == nil {
			t.Fatalf("registering %s twice without a key succeeded", subj)
		}
		p, err := flux.Load[*Person](ctx, repo, subj)
		if err != nil {
			t.Fatal(err)
		}
		flux.Raise(p, Renamed{UserID: subj, Name: canary(subj, "rename2")})
		flux.Raise(p, Renamed{UserID: subj, Name: canary(subj, "rename3")})
		if err := repo.Save(ctx, p); err != nil { // snapshot at 4
			t.Fatal(err)
		}
	}
	project()
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

	forms := clearForms()
	check := func(phase string) {
		t.Helper()
		var head int64
		for rec, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			head = rec.Position
		}
		dump := h.Dump(t, s)
		for _, subj := range append(subjects, keeper) {
			if !bytes.Contains(dump, []byte("CONTROL-"+subj)) || !bytes.Contains(dump, []byte("CONTROL-ADDR-"+subj)) {
				t.Fatalf("%s: the dump does not contain the unmarked control value of %s: it does not cover the events table", phase, subj)
			}
		}
		// 4 people × (4 values in Profile + 3 renames + 2 snapshots × 2
		// fields); idempotency results may be dumped as binary (bytea).
		if got := bytes.Count(dump, []byte(pii.EnvelopePrefix)); got < 4*(4+3+2*2) {
			t.Fatalf("%s: the dump has %d encrypted values; does it cover events and snapshots?", phase, got)
		}
		if !bytes.Contains(dump, []byte("register-"+keeper)) {
			t.Fatalf("%s: the dump does not cover the idempotency records", phase)
		}
		if h.ReadModel != nil && !bytes.Contains(dump, []byte("readmodel")) && !bytes.Contains(dump, []byte("piitest_people")) {
			t.Fatalf("%s: the dump does not cover the read model's table", phase)
		}
		all := map[string][]byte{"tables": dump, "read model": mem.dump(), "logs": logs.Bytes()}
		if relayed != nil {
			all["broker"] = relayed(head)
			if !bytes.Contains(all["broker"], []byte("CONTROL-"+keeper)) {
				t.Fatalf("%s: the broker's stream does not hold the relayed events", phase)
			}
		}
		if !bytes.Contains(all["logs"], []byte("flux: message handled")) || !bytes.Contains(all["logs"], []byte("flux: message failed")) {
			t.Fatalf("%s: the captured logs miss the command log lines:\n%s", phase, all["logs"])
		}
		for where, b := range all {
			for _, f := range forms {
				if i := bytes.Index(b, f); i >= 0 {
					t.Fatalf("%s: %s hold a canary as %q, near %q", phase, where, f, b[max(0, i-60):min(len(b), i+60)])
				}
			}
		}
	}
	check("before forgetting")

	for _, subj := range subjects {
		rep, err := prot.Forget(ctx, subj, pii.ForgetOptions{By: "piitest"})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.KeyDeleted || !rep.Signalled {
			t.Fatalf("Forget(%s) = %+v", subj, rep)
		}
	}
	project()
	check("after forgetting")

	// Cold protectors (another process): no forgotten value decrypts,
	// every aggregate still loads, from its snapshot and by full replay,
	// the keeper is intact.
	cold, _ := newRepo(flux.SnapshotPolicy{Every: 2, Keep: 5})
	replay, _ := newRepo(flux.SnapshotPolicy{Disabled: true})
	for _, subj := range subjects {
		if _, err := keys.LoadKey(ctx, subj); !errors.Is(err, pii.ErrForgotten) {
			t.Fatalf("key of %s after forgetting: %v", subj, err)
		}
		for _, r := range []struct {
			how          string
			repo         *flux.Repository
			fromSnapshot bool
		}{{"from its snapshot", cold, true}, {"by replay", replay, false}} {
			p, err := flux.Load[*Person](ctx, r.repo, subj)
			if err != nil {
				t.Fatalf("load %s %s after forgetting: %v", subj, r.how, err)
			}
			if p.Email != "[forgotten]" || p.Name != "[forgotten]" || !p.LoadInfo().Forgotten || (p.LoadInfo().SnapshotVersion > 0) != r.fromSnapshot {
				t.Fatalf("%s loaded %s after forgetting = %+v %+v", subj, r.how, p, p.LoadInfo())
			}
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

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
