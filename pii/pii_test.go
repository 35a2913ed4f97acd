package pii_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

type Address struct {
	Street string `json:"street" pii:"data"`
	City   string `json:"city"`
}

type Child struct {
	Name string `json:"name" pii:"data"`
	Age  int    `json:"age"`
}

// Profiled has personal fields of several kinds, nested and in slices.
type Profiled struct {
	UserID    string   `json:"userId" pii:"subject"`
	Email     string   `json:"email" pii:"data"`
	Phone     string   `json:"phone,omitempty" pii:"data"`
	BirthYear int      `json:"birthYear" pii:"data"`
	Tags      []string `json:"tags" pii:"data"`
	Home      Address  `json:"home"`
	Work      *Address `json:"work"`
	Children  []Child  `json:"children"`
	Plan      string   `json:"plan"`
}

type PlanChanged struct {
	UserID string `json:"userId"`
	Plan   string `json:"plan"`
}

// Member keeps the personal data in its state and snapshots it; its
// subject is its ID.
type Member struct {
	flux.Root
	Email string `json:"email" pii:"data"`
	Home  string `json:"home" pii:"data"`
	Plan  string `json:"plan"`
}

func (m *Member) PersonalDataSubject() string { return m.ID() }

func (m *Member) Apply(e any) {
	switch e := e.(type) {
	case Profiled:
		m.Email, m.Home, m.Plan = e.Email, e.Home.Street, e.Plan
	case PlanChanged:
		m.Plan = e.Plan
	}
}

func (m *Member) SnapshotState() any                           { return m }
func (m *Member) RestoreSnapshot(decode func(any) error) error { return decode(m) }

const secret = "0123456789abcdef0123456789abcdef"

type env struct {
	store *memstore.Store
	keys  *countingKeys
	prot  *pii.Protector
	repo  *flux.Repository
}

// countingKeys counts key-store round trips.
type countingKeys struct {
	pii.KeyStore
	loads, creates atomic.Int64
}

func (c *countingKeys) LoadKey(ctx context.Context, s string) (pii.StoredKey, error) {
	c.loads.Add(1)
	return c.KeyStore.LoadKey(ctx, s)
}

func (c *countingKeys) CreateKey(ctx context.Context, k pii.StoredKey) (pii.StoredKey, error) {
	c.creates.Add(1)
	return c.KeyStore.CreateKey(ctx, k)
}

func registry(t testing.TB, every int) *flux.Registry {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Member", func() *Member { return new(Member) },
		flux.EventType[Profiled]("Profiled", 1),
		flux.EventType[PlanChanged]("PlanChanged", 1),
		flux.Snapshots(flux.SnapshotPolicy{Every: every}),
	))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newEnv(t testing.TB, store *memstore.Store, secret string, cfg pii.Config) *env {
	t.Helper()
	if store == nil {
		store = memstore.New()
	}
	keys := &countingKeys{KeyStore: store}
	cfg.Keys, cfg.Secret = keys, []byte(secret)
	prot, err := pii.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: registry(t, 3), Protector: prot})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, keys: keys, prot: prot, repo: repo}
}

func profile(id string) Profiled {
	return Profiled{
		UserID: id, Email: id + "@canary.example", Phone: "+1-555-CANARY", BirthYear: 1815,
		Tags: []string{"canary-tag"}, Home: Address{Street: "1 Canary Row", City: "London"},
		Work:     &Address{Street: "2 Canary Wharf", City: "London"},
		Children: []Child{{Name: "Canary Junior", Age: 3}, {Name: "Canary Minor", Age: 1}}, Plan: "gold",
	}
}

func signUp(t testing.TB, e *env, id string) Profiled {
	t.Helper()
	m := new(Member)
	m.SetID(id)
	p := profile(id)
	flux.Raise(m, p)
	if err := e.repo.Save(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return p
}

func storedPayloads(t testing.TB, s *memstore.Store) [][]byte {
	t.Helper()
	var out [][]byte
	for r, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Payload)
	}
	return out
}

func TestRoundTripAndNothingInClear(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t, nil, secret, pii.Config{})
	want := signUp(t, e, "u1")
	payload := storedPayloads(t, e.store)[0]
	if bytes.Contains(payload, []byte("anary")) || bytes.Contains(payload, []byte("1815")) {
		t.Fatalf("personal data stored in clear: %s", payload)
	}
	for _, clear := range []string{`"plan":"gold"`, `"userId":"u1"`, `"city":"London"`, `"age":3`} {
		if !bytes.Contains(payload, []byte(clear)) {
			t.Fatalf("unmarked field %s missing from %s", clear, payload)
		}
	}
	if n := bytes.Count(payload, []byte(pii.EnvelopePrefix)); n != 8 {
		t.Fatalf("%d encrypted values, want 8 (email, phone, birthYear, tags, home.street, work.street, 2 children names): %s", n, payload)
	}
	for env, err := range e.repo.AllEvents(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if got := env.Event.(Profiled); !reflect.DeepEqual(got, want) || len(env.Forgotten) != 0 {
			t.Fatalf("decoded %+v (forgotten %v), want %+v", got, env.Forgotten, want)
		}
	}
	m, err := flux.Load[*Member](ctx, e.repo, "u1")
	if err != nil || m.Email != "u1@canary.example" || m.Home != "1 Canary Row" {
		t.Fatalf("load = %+v, %v", m, err)
	}
	// Two encryptions of the same event, for the same subject, key, scope
	// and fields, differ: every value gets a fresh nonce.
	p := profile("u1")
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.prot.Protect(ctx, p, data, "u1/1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.prot.Protect(ctx, p, data, "u1/1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, out := range [][]byte{first, second} {
		for _, env := range envelopeRE.FindAll(out, -1) {
			if seen[string(env)] {
				t.Fatalf("a ciphertext repeats: %s", env)
			}
			seen[string(env)] = true
		}
	}
	if len(seen) < 8 {
		t.Fatalf("only %d encrypted values in %s", len(seen), first)
	}
}

var envelopeRE = regexp.MustCompile(`"fluxpii:v1:[A-Za-z0-9_-]+"`)

func TestCiphertextIsBoundToSubjectEventAndField(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t, nil, secret, pii.Config{})
	signUp(t, e, "u1")
	orig := storedPayloads(t, e.store)[0]
	obj, err := flux.ParsePayload(orig)
	if err != nil {
		t.Fatal(err)
	}
	email, _ := obj.Raw("email")
	phone, _ := obj.Raw("phone")

	cases := []struct {
		name    string
		payload func() []byte
		subject string
	}{
		{"copied to another event", func() []byte { return orig }, "u1"},
		{"copied to another field", func() []byte {
			o, err := flux.ParsePayload(orig)
			if err != nil {
				t.Fatal(err)
			}
			o.SetRaw("phone", email)
			o.SetRaw("email", phone)
			return o.Bytes()
		}, "u1"},
		{"copied to another subject", func() []byte {
			o, err := flux.ParsePayload(orig)
			if err != nil {
				t.Fatal(err)
			}
			_ = o.Set("userId", "u9")
			return o.Bytes()
		}, "u9"},
		{"flipped bit", func() []byte {
			b := bytes.Clone(orig)
			i := bytes.Index(b, []byte(pii.EnvelopePrefix)) + len(pii.EnvelopePrefix) + 20
			if b[i] == 'A' { // another valid base64url character
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return b
		}, "u1"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("copy-%d", i)
			if c.subject == "u9" {
				// u9 has a key of its own: the copied value must not open with it.
				signUp(t, e, "u9")
			}
			_, err := e.store.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{
				StreamID: id, AggregateType: "Member", Expected: flux.NoStream,
				Events: []flux.EventData{{EventID: newID(), EventName: "Profiled", EventVersion: 1, Payload: c.payload(), OccurredAt: now()}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = flux.Load[*Member](ctx, e.repo, id)
			var fe *pii.FieldError
			var ee *flux.EventError
			if !errors.Is(err, pii.ErrTampered) || !errors.Is(err, flux.ErrPersonalData) || !errors.As(err, &fe) || !errors.As(err, &ee) {
				t.Fatalf("err = %v, want a tampering error", err)
			}
			if ee.StreamID != id || ee.StreamVersion != 1 || ee.EventName != "Profiled" || fe.Field == "" {
				t.Fatalf("error does not name stream, version and field: %v", err)
			}
			if strings.Contains(err.Error(), "anary") || strings.Contains(err.Error(), "1815") {
				t.Fatalf("error contains a personal value: %v", err)
			}
		})
	}
}

func TestWrongSecret(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	signUp(t, newEnv(t, store, secret, pii.Config{}), "u1")
	other := newEnv(t, store, "another-secret-of-enough-length!", pii.Config{})
	_, err := flux.Load[*Member](t.Context(), other.repo, "u1")
	if !errors.Is(err, pii.ErrWrongSecret) || !strings.Contains(err.Error(), "KEY_MANAGEMENT_SECRET") {
		t.Fatalf("err = %v, want ErrWrongSecret telling what to do", err)
	}
	// The error names the stream, version, event and field, and what to do.
	var fe *pii.FieldError
	if !errors.As(err, &fe) || fe.Field != "email" || fe.Subject != "u1" {
		t.Fatalf("err = %v, want a FieldError on email of u1", err)
	}
	for _, want := range []string{`stream "u1" version 1`, "event Profiled v1", "field email"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %s", err, want)
		}
	}
	if _, err := pii.New(pii.Config{Keys: store, Secret: []byte("short")}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
	if _, err := pii.New(pii.Config{Secret: []byte(secret)}); err == nil {
		t.Fatal("a config without a key store was accepted")
	}
}

func TestForget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t, nil, secret, pii.Config{Replacement: "[forgotten]"})
	signUp(t, e, "u1")
	signUp(t, e, "u2")
	m, _ := flux.Load[*Member](ctx, e.repo, "u1")
	for i := 0; i < 3; i++ { // enough events for a snapshot (every 3)
		flux.Raise(m, PlanChanged{UserID: "u1", Plan: fmt.Sprint("p", i)})
	}
	if err := e.repo.Save(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := e.prot.Forget(ctx, "u1", pii.ForgetOptions{By: "dpo@company", Reason: "ticket 42"}); err != nil {
		t.Fatal(err)
	}
	// The aggregate still loads, from its snapshot, with replacements.
	m, err := flux.Load[*Member](ctx, e.repo, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Email != "[forgotten]" || m.Home != "[forgotten]" || m.Plan != "p2" || !m.LoadInfo().Forgotten || m.LoadInfo().SnapshotVersion != 4 {
		t.Fatalf("forgotten member = %+v, info %+v", m, m.LoadInfo())
	}
	// Events still load; the caller can tell which fields were forgotten.
	for env, err := range e.repo.Events(ctx, "u1", &flux.EventsOptions{Types: []any{Profiled{}}}) {
		if err != nil {
			t.Fatal(err)
		}
		p := env.Event.(Profiled)
		if p.Email != "[forgotten]" || p.BirthYear != 0 || p.Tags != nil || p.Home.Street != "[forgotten]" || p.Home.City != "London" || p.Plan != "gold" {
			t.Fatalf("forgotten event = %+v", p)
		}
		want := []string{"email", "phone", "birthYear", "tags", "home.street", "work.street", "children[0].name", "children[1].name"}
		if !reflect.DeepEqual(env.Forgotten, want) {
			t.Fatalf("forgotten fields = %v, want %v", env.Forgotten, want)
		}
	}
	// Others are untouched.
	if other, err := flux.Load[*Member](ctx, e.repo, "u2"); err != nil || other.Email != "u2@canary.example" {
		t.Fatalf("u2 = %+v, %v", other, err)
	}
	// The forgetting is recorded, without personal data.
	rec, ok, err := e.store.Forgotten(ctx, "u1")
	if err != nil || !ok || rec.By != "dpo@company" || rec.Reason != "ticket 42" || rec.At.IsZero() {
		t.Fatalf("forgetting record = %+v, %v, %v", rec, ok, err)
	}
	// No new key by accident: re-saving the old personal data fails.
	again := new(Member)
	again.SetID("u1-again")
	flux.Raise(again, profile("u1"))
	if err := e.repo.Save(ctx, again); !errors.Is(err, pii.ErrForgotten) || !errors.Is(err, flux.ErrPersonalData) {
		t.Fatalf("re-save of a forgotten subject's data: err = %v", err)
	}
	if _, err := e.store.LoadKey(ctx, "u1"); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("key of u1 after forgetting: %v", err)
	}
	// A second Protector (another process, cold cache) sees it too.
	fresh := newEnv(t, e.store, secret, pii.Config{})
	if m, err := flux.Load[*Member](ctx, fresh.repo, "u1"); err != nil || m.Email != "" {
		t.Fatalf("fresh protector: %+v, %v", m, err)
	}
}

// TestForgetByAnotherProcessTakesEffectWithinCacheTTL pins the documented
// bound: a Protector that cached a key before another process forgot the
// subject may use it for up to CacheTTL, and not a moment longer; what it
// wrote in that window was sealed under the deleted key, so it reads as
// forgotten too.
func TestForgetByAnotherProcessTakesEffectWithinCacheTTL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var mu sync.Mutex
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	a := newEnv(t, nil, secret, pii.Config{CacheTTL: time.Minute, Clock: clock})
	b := newEnv(t, a.store, secret, pii.Config{Clock: clock})
	signUp(t, a, "u1")
	if m, err := flux.Load[*Member](ctx, a.repo, "u1"); err != nil || m.Email != "u1@canary.example" {
		t.Fatalf("load = %+v, %v", m, err)
	}
	if _, err := b.prot.Forget(ctx, "u1", pii.ForgetOptions{By: "dpo"}); err != nil {
		t.Fatal(err)
	}
	// Within the TTL, a's cached key still works, for reads and writes.
	advance(59 * time.Second)
	if m, err := flux.Load[*Member](ctx, a.repo, "u1"); err != nil || m.Email != "u1@canary.example" {
		t.Fatalf("within the TTL: %+v, %v", m, err)
	}
	late := new(Member)
	late.SetID("u1-late")
	flux.Raise(late, profile("u1"))
	if err := a.repo.Save(ctx, late); err != nil {
		t.Fatalf("a save within the TTL: %v", err)
	}
	// After it, a reads the subject as forgotten, including what it wrote
	// in the window, and refuses new personal data for it.
	advance(2 * time.Second)
	for _, id := range []string{"u1", "u1-late"} {
		m, err := flux.Load[*Member](ctx, a.repo, id)
		if err != nil || m.Email != "" || !m.LoadInfo().Forgotten {
			t.Fatalf("%s after the TTL: %+v (info %+v), %v", id, m, m.LoadInfo(), err)
		}
	}
	again := new(Member)
	again.SetID("u1-again")
	flux.Raise(again, profile("u1"))
	if err := a.repo.Save(ctx, again); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("a save after the TTL: err = %v, want ErrForgotten", err)
	}
}

func TestMissingKeyIsNotForgetting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	e := newEnv(t, store, secret, pii.Config{})
	signUp(t, e, "u1")
	// Lose the key without a tombstone, as a restore from an old backup of
	// the key table would: copy the events to a store without keys.
	keyless := memstore.New()
	for r, err := range store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keyless.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: r.StreamID, AggregateType: r.AggregateType, Expected: flux.Any,
			Events: []flux.EventData{{EventID: r.EventID, EventName: r.EventName, EventVersion: r.EventVersion, Payload: r.Payload, Metadata: r.Metadata, OccurredAt: r.OccurredAt}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	k := newEnv(t, keyless, secret, pii.Config{})
	_, err := flux.Load[*Member](ctx, k.repo, "u1")
	var fe *pii.FieldError
	if !errors.Is(err, pii.ErrKeyMissing) || errors.Is(err, flux.ErrSubjectForgotten) || !errors.As(err, &fe) || fe.Field != "email" || fe.Reason() != "key_missing" {
		t.Fatalf("keyless load err = %v, want ErrKeyMissing naming the field", err)
	}
	if strings.Contains(err.Error(), "canary") {
		t.Fatalf("error quotes personal data: %v", err)
	}
	// Forgetting the subject on purpose turns the same data into erasure.
	if _, err := k.prot.Forget(ctx, "u1", pii.ForgetOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	m, err := flux.Load[*Member](ctx, k.repo, "u1")
	if err != nil || m.Email != "" || !m.LoadInfo().Forgotten {
		t.Fatalf("after Forget: %+v, %v", m, err)
	}
}

func TestClearTextInAPersonalFieldFailsTheLoad(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, allow := range []bool{false, true} {
		store := memstore.New()
		e := newEnv(t, store, secret, pii.Config{AllowUnencrypted: allow})
		// Written around the framework: the email is in clear.
		p := profile("u-clear")
		if _, err := store.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "u-clear", AggregateType: "Member", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: newID(), EventName: "Profiled", EventVersion: 1, Payload: mustJSON(p), OccurredAt: now()}}}}}); err != nil {
			t.Fatal(err)
		}
		m, err := flux.Load[*Member](ctx, e.repo, "u-clear")
		if allow {
			if err != nil || m.Email != p.Email {
				t.Fatalf("AllowUnencrypted: %+v, %v", m, err)
			}
			continue
		}
		var fe *pii.FieldError
		if !errors.Is(err, pii.ErrNotEncrypted) || !errors.As(err, &fe) || fe.Field == "" || fe.Reason() != "not_encrypted" {
			t.Fatalf("load err = %v, want ErrNotEncrypted naming the field", err)
		}
		if strings.Contains(err.Error(), p.Email) {
			t.Fatalf("error quotes the value: %v", err)
		}
	}
}

// Replaced has a field of every kind, some with their own replacement.
type Replaced struct {
	ID      string            `json:"id" pii:"subject"`
	Name    string            `json:"name" pii:"data"`
	Alias   string            `json:"alias" pii:"data,replace=(erased)"`
	Age     int               `json:"age" pii:"data"`
	Score   float64           `json:"score" pii:"data,replace=-1"`
	Adult   bool              `json:"adult" pii:"data"`
	Vip     bool              `json:"vip" pii:"data,replace=true"`
	Born    time.Time         `json:"born" pii:"data"`
	Seen    time.Time         `json:"seen" pii:"data,replace=2000-01-01T00:00:00Z"`
	Emails  []string          `json:"emails" pii:"data"`
	Phones  []string          `json:"phones" pii:"data,replace=[\"hidden\"]"`
	Home    Address           `json:"homeAddr" pii:"data"`
	Notes   map[string]string `json:"notes" pii:"data"`
	Pointer *int              `json:"pointer" pii:"data"`
}

func TestReplacementValuesForEveryKind(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret), Replacement: "[forgotten]"})
	if err != nil {
		t.Fatal(err)
	}
	seven := 7
	v := Replaced{ID: "r1", Name: "Ann", Alias: "A", Age: 40, Score: 9.5, Adult: true, Vip: false,
		Born: time.Date(1985, 1, 2, 0, 0, 0, 0, time.UTC), Seen: time.Now().UTC().Truncate(time.Second),
		Emails: []string{"a@x.test"}, Phones: []string{"555"}, Home: Address{Street: "Main 1", City: "Gent"},
		Notes: map[string]string{"k": "v"}, Pointer: &seven}
	sealed, err := prot.Protect(ctx, v, mustJSON(v), "test")
	if err != nil {
		t.Fatal(err)
	}
	var back Replaced
	if _, err := prot.Unprotect(ctx, sealed, &back, "test"); err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	if _, err := prot.Forget(ctx, "r1", pii.ForgetOptions{}); err != nil {
		t.Fatal(err)
	}
	var got Replaced
	forgotten, err := prot.Unprotect(ctx, sealed, &got, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := Replaced{ID: "r1", Name: "[forgotten]", Alias: "(erased)", Score: -1, Vip: true,
		Seen: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), Phones: []string{"hidden"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("forgotten = %+v\nwant        %+v", got, want)
	}
	if len(forgotten) != 13 {
		t.Fatalf("forgotten fields = %v", forgotten)
	}
}

type BadReplace struct {
	ID  string `json:"id" pii:"subject"`
	Age int    `json:"age" pii:"data,replace=old"`
}

type BadOption struct {
	ID  string `json:"id" pii:"subject"`
	Age int    `json:"age" pii:"data,keep"`
}

func TestBadReplacementIsRefusedAtStartUp(t *testing.T) {
	t.Parallel()
	prot, err := pii.New(pii.Config{Keys: memstore.New(), Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[BadReplace](), reflect.TypeFor[BadOption]()} {
		err := prot.CheckType(typ)
		if !errors.Is(err, pii.ErrUnsupportedField) || !strings.Contains(err.Error(), "age") {
			t.Fatalf("CheckType(%s) = %v", typ, err)
		}
	}
}

func TestConcurrentFirstUseCreatesOneKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	// Two protectors, as two processes would be.
	a := newEnv(t, store, secret, pii.Config{})
	b := newEnv(t, store, secret, pii.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := a
			if i%2 == 1 {
				e = b
			}
			m := new(Member)
			m.SetID(fmt.Sprintf("stream-%d", i))
			p := profile("shared-subject")
			flux.Raise(m, p)
			errs <- e.repo.Save(ctx, m)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every event decrypts with the one stored key, through a third,
	// cold protector.
	c := newEnv(t, store, secret, pii.Config{})
	for env, err := range c.repo.AllEvents(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if env.Event.(Profiled).Email != "shared-subject@canary.example" {
			t.Fatalf("event %d did not decrypt", env.Position)
		}
	}
	if c.keys.loads.Load() != 1 {
		t.Fatalf("cold protector read the key %d times", c.keys.loads.Load())
	}
}

func TestColdLoadReadsEachKeyOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	w := newEnv(t, store, secret, pii.Config{})
	const subjects = 1000
	for i := 0; i < subjects; i++ {
		m := new(Member)
		m.SetID(fmt.Sprintf("m%d", i))
		flux.Raise(m, profile(fmt.Sprintf("s%d", i)))
		flux.Raise(m, profile(fmt.Sprintf("s%d", i))) // two events per subject
		if err := w.repo.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r := newEnv(t, store, secret, pii.Config{})
	n := 0
	for _, err := range r.repo.AllEvents(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2*subjects || r.keys.loads.Load() != subjects {
		t.Fatalf("read %d events with %d key reads, want %d reads for %d subjects", n, r.keys.loads.Load(), subjects, subjects)
	}
	if st := r.prot.Stats(); st.KeyReads != subjects || st.CacheHits == 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	old := newEnv(t, store, secret, pii.Config{})
	signUp(t, old, "u1")
	signUp(t, old, "u2")
	before := storedPayloads(t, store)
	newSecret := "fedcba9876543210fedcba9876543210"
	n, err := pii.RotateSecret(ctx, store, []byte(secret), []byte(newSecret), now())
	if err != nil || n != 2 {
		t.Fatalf("rotate = %d, %v", n, err)
	}
	if after := storedPayloads(t, store); !reflect.DeepEqual(before, after) {
		t.Fatal("rotation touched events")
	}
	rotated := newEnv(t, store, newSecret, pii.Config{})
	if m, err := flux.Load[*Member](ctx, rotated.repo, "u2"); err != nil || m.Email != "u2@canary.example" {
		t.Fatalf("load with the new secret = %+v, %v", m, err)
	}
	stale := newEnv(t, store, secret, pii.Config{})
	if _, err := flux.Load[*Member](ctx, stale.repo, "u1"); !errors.Is(err, pii.ErrWrongSecret) {
		t.Fatalf("load with the old secret after rotation: err = %v", err)
	}
	// Rotating again with the wrong old secret changes nothing.
	if _, err := pii.RotateSecret(ctx, store, []byte("not-the-old-secret-at-all-1234"), []byte(secret), now()); err == nil {
		t.Fatal("rotation from a wrong secret succeeded")
	}
	if m, err := flux.Load[*Member](ctx, rotated.repo, "u1"); err != nil || m.Email != "u1@canary.example" {
		t.Fatalf("after a failed rotation = %+v, %v", m, err)
	}
}

type (
	WithChan struct {
		ID string   `pii:"subject"`
		C  chan int `pii:"data"`
	}
	WithMapMarks struct {
		ID string             `pii:"subject"`
		M  map[string]Address `json:"m"`
	}
	WithHidden struct {
		ID     string `pii:"subject"`
		hidden string `pii:"data"`
	}
	WithDash struct {
		ID string `pii:"subject"`
		D  string `json:"-" pii:"data"`
	}
	WithIntSubj struct {
		ID int    `pii:"subject"`
		D  string `pii:"data"`
	}
	WithTwoSubj struct {
		A string `pii:"subject"`
		B string `pii:"subject"`
	}
	WithBadTag struct {
		ID string `pii:"subject"`
		D  string `pii:"secret"`
	}
	WithNoSubject struct {
		D string `pii:"data"`
	}
)

func TestUnsupportedMarksAreTypedErrors(t *testing.T) {
	t.Parallel()
	prot, err := pii.New(pii.Config{Keys: memstore.New(), Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		v    any
		want error
	}{
		{WithChan{ID: "s"}, pii.ErrUnsupportedField},
		{WithMapMarks{ID: "s"}, pii.ErrUnsupportedField},
		{WithHidden{ID: "s", hidden: "x"}, pii.ErrUnsupportedField},
		{WithDash{ID: "s", D: "x"}, pii.ErrUnsupportedField},
		{WithIntSubj{ID: 1, D: "x"}, pii.ErrUnsupportedField},
		{WithTwoSubj{A: "a", B: "b"}, pii.ErrUnsupportedField},
		{WithBadTag{ID: "s", D: "x"}, pii.ErrUnsupportedField},
		{WithNoSubject{D: "x"}, pii.ErrNoSubject},
		{Profiled{Email: "no-subject-set@canary.example"}, pii.ErrNoSubject},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%T", c.v), func(t *testing.T) {
			_, err := prot.Protect(t.Context(), c.v, []byte(`{}`), "event:x")
			var fe *pii.FieldError
			if !errors.Is(err, c.want) || !errors.Is(err, flux.ErrPersonalData) || !errors.As(err, &fe) || fe.Type == "" {
				t.Fatalf("err = %v, want %v as a *pii.FieldError", err, c.want)
			}
			if strings.Contains(err.Error(), "canary") {
				t.Fatalf("error contains the value: %v", err)
			}
		})
	}
}

// TestRepositoryChecksMarksAtStartUp: NewRepository refuses an event type
// whose marks cannot work, naming the event, instead of failing its saves.
func TestRepositoryChecksMarksAtStartUp(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		def  flux.AggregateOption
		want error
	}{
		{"WithMapMarks", flux.EventType[WithMapMarks]("WithMapMarks", 1), pii.ErrUnsupportedField},
		{"WithIntSubj", flux.EventType[WithIntSubj]("WithIntSubj", 1), pii.ErrUnsupportedField},
		{"WithNoSubject", flux.EventType[WithNoSubject]("WithNoSubject", 1), pii.ErrNoSubject},
	}
	for _, c := range cases {
		reg, err := flux.NewRegistry(flux.AggregateType("Member", func() *Member { return new(Member) },
			flux.EventType[Profiled]("Profiled", 1), c.def))
		if err != nil {
			t.Fatal(err)
		}
		_, err = flux.NewRepository(flux.Config{Store: store, Registry: reg, Protector: prot})
		if !errors.Is(err, c.want) || !errors.Is(err, flux.ErrPersonalData) || !strings.Contains(err.Error(), `event "`+c.name+`"`) {
			t.Errorf("%s: err = %v, want %v naming the event", c.name, err, c.want)
		}
	}
	// Types whose marks work pass.
	if _, err := flux.NewRepository(flux.Config{Store: store, Registry: registry(t, 3), Protector: prot}); err != nil {
		t.Fatal(err)
	}
}

func TestRepositoryRefusesPersonalDataWithoutProtector(t *testing.T) {
	t.Parallel()
	_, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: registry(t, 3)})
	if err == nil || !strings.Contains(err.Error(), "Config.Protector is nil") {
		t.Fatalf("err = %v", err)
	}
}

var ids struct {
	sync.Mutex
	n int
}

func newID() string {
	ids.Lock()
	defer ids.Unlock()
	ids.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", ids.n)
}

// TestDirectPathCopiesWhatItKeepsAndScrubsOnError: on the direct path, a
// field that is not personal keeps its own copy even when its text looks
// like an envelope, and a failed decryption leaves no envelope behind.
func TestDirectPathCopiesWhatItKeepsAndScrubsOnError(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t, nil, secret, pii.Config{})
	type flat struct {
		UserID string `json:"userId" pii:"subject"`
		Email  string `json:"email" pii:"data"`
		Note   string `json:"note"`
	}
	ev := flat{UserID: "u1", Email: "u1@canary.example", Note: pii.EnvelopePrefix + "just-a-note"}
	data, err := e.prot.Protect(ctx, ev, mustJSON(ev), "event:e1")
	if err != nil {
		t.Fatal(err)
	}
	stored := bytes.Clone(data)
	var got flat
	if _, err := e.prot.Unprotect(ctx, stored, &got, "event:e1"); err != nil {
		t.Fatal(err)
	}
	for i := range stored {
		stored[i] = 'X' // the buffer is reused for something else
	}
	if got != ev {
		t.Fatalf("decoded %+v, want %+v", got, ev)
	}
	// Copied to another event: the decryption fails, and the target keeps
	// neither the envelope nor anything decrypted.
	var moved flat
	_, err = e.prot.Unprotect(ctx, data, &moved, "event:e2")
	if !errors.Is(err, pii.ErrTampered) || moved.Email != "" {
		t.Fatalf("err %v, email %q; want ErrTampered and an empty email", err, moved.Email)
	}
}

type SignUp struct{ ID string }

// SignedUp is a command result with personal data: the idempotency record
// keeps a copy of it.
type SignedUp struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
}

func TestIdempotencyRecordsEncryptPersonalResults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t, nil, secret, pii.Config{Replacement: "[forgotten]"})
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: e.repo})
	if err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleCommandResult(bus, func(ctx context.Context, c SignUp) (SignedUp, error) {
		m := new(Member)
		m.SetID(c.ID)
		flux.Raise(m, profile(c.ID))
		if err := flux.Track(ctx, m); err != nil {
			return SignedUp{}, err
		}
		return SignedUp{UserID: c.ID, Email: c.ID + "@canary.example"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	kctx := flux.WithIdempotencyKey(ctx, "signup-i1")
	first, err := flux.DispatchResult[SignedUp](kctx, bus, SignUp{ID: "i1"})
	if err != nil || first.Email != "i1@canary.example" {
		t.Fatalf("first = %+v, %v", first, err)
	}
	rec, found, err := e.store.LookupIdempotency(ctx, "signup-i1")
	if err != nil || !found {
		t.Fatalf("record: %v %v", found, err)
	}
	if bytes.Contains(rec.Result, []byte("canary")) || !bytes.Contains(rec.Result, []byte(pii.EnvelopePrefix)) {
		t.Fatalf("idempotency record holds the result in clear: %s", rec.Result)
	}
	again, err := flux.DispatchResult[SignedUp](flux.WithIdempotencyKey(ctx, "signup-i1"), bus, SignUp{ID: "i1"})
	if err != nil || again != first {
		t.Fatalf("duplicate = %+v, %v; want %+v", again, err, first)
	}
	if _, err := e.prot.Forget(ctx, "i1", pii.ForgetOptions{}); err != nil {
		t.Fatal(err)
	}
	gone, err := flux.DispatchResult[SignedUp](flux.WithIdempotencyKey(ctx, "signup-i1"), bus, SignUp{ID: "i1"})
	if err != nil || gone.Email != "[forgotten]" || gone.UserID != "i1" {
		t.Fatalf("after Forget = %+v, %v", gone, err)
	}

	// Without a protector, such a result type is refused at registration.
	reg, err := flux.NewRegistry(flux.AggregateType("Plain", func() *plainAgg { return new(plainAgg) }, flux.EventType[PlanChanged]("PlanChanged", 1)))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg})
	if err == nil {
		plain, berr := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo})
		if berr != nil {
			t.Fatal(berr)
		}
		err = flux.HandleCommandResult(plain, func(context.Context, SignUp) (SignedUp, error) { return SignedUp{}, nil })
	}
	if !errors.Is(err, flux.ErrPersonalData) {
		t.Fatalf("no protector: err = %v", err)
	}
}

type plainAgg struct{ flux.Root }

func (*plainAgg) Apply(any) {}

type typedAsText struct {
	ID  string `json:"id" pii:"subject"`
	Age string `json:"age" pii:"data"`
	Zip string `json:"zip" pii:"data"`
}

type typedAsNumber struct {
	ID  string `json:"id" pii:"subject"`
	Age int    `json:"age,string" pii:"data"`
	Zip int    `json:"zip" pii:"data"`
}

// A decrypted value that does not fit its Go type fails the load without
// the decoder quoting it.
func TestDecodeErrorsDoNotQuoteDecryptedValues(t *testing.T) {
	t.Parallel()
	prot, err := pii.New(pii.Config{Keys: memstore.New(), Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	v := typedAsText{ID: "d1", Age: "CANARY-age", Zip: "CANARY-zip"}
	sealed, err := prot.Protect(t.Context(), v, mustJSON(v), "s")
	if err != nil {
		t.Fatal(err)
	}
	var out typedAsNumber
	_, err = prot.Unprotect(t.Context(), sealed, &out, "s")
	if !errors.Is(err, pii.ErrUndecodable) || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("err = %v", err)
	}
}
