package flux_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/uuid"
)

// The PHP library's example: UserRegistered v1 -> v2 adds phoneNumber with a
// default. Here the event was also renamed to PersonSignedUp at v3, which
// splits "name" into first and last names.
type PersonSignedUp struct {
	Email       string `json:"email"`
	FirstName   string `json:"firstName"`
	LastName    string `json:"lastName"`
	PhoneNumber string `json:"phoneNumber"`
}

type Person struct {
	flux.Root
	PersonSignedUp
}

func (p *Person) Apply(e any) {
	if s, ok := e.(PersonSignedUp); ok {
		p.PersonSignedUp = s
	}
}

var errNoName = errors.New("name is missing")

func personRegistry(t testing.TB) *flux.Registry {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Person", func() *Person { return new(Person) },
		flux.EventType[PersonSignedUp]("PersonSignedUp", 3,
			flux.UpcastRenamed("UserRegistered", 1, func(p *flux.Payload) error {
				return p.SetDefault("phoneNumber", "")
			}),
			flux.UpcastRenamed("UserRegistered", 2, func(p *flux.Payload) error {
				name, err := p.StringValue("name")
				if err != nil {
					return errNoName
				}
				first, last, _ := strings.Cut(name, " ")
				p.Delete("name")
				p.SetString("firstName", first)
				p.SetString("lastName", last)
				return nil
			}),
		),
	))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

var testIDs uuid.Generator

func storeRaw(t testing.TB, s flux.EventStore, stream string, expected flux.ExpectedVersion, name string, version int, payload string) {
	t.Helper()
	_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: stream, AggregateType: "Person", Expected: expected,
		Events: []flux.EventData{{EventID: testIDs.New(), EventName: name, EventVersion: version, Payload: []byte(payload), OccurredAt: time.Now()}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpcastChainWithRename(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	repo := repoWith(t, store, personRegistry(t), nil)
	storeRaw(t, store, "p1", flux.NoStream, "UserRegistered", 1, `{"email":"ada@example.com","name":"Ada Lovelace"}`)
	storeRaw(t, store, "p2", flux.NoStream, "UserRegistered", 2, `{"email":"bob@example.com","name":"Bob","phoneNumber":"+44 1"}`)
	storeRaw(t, store, "p3", flux.NoStream, "PersonSignedUp", 3, `{"email":"cy@example.com","firstName":"Cy","lastName":"D","phoneNumber":"2"}`)

	want := map[string]PersonSignedUp{
		"p1": {Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", PhoneNumber: ""},
		"p2": {Email: "bob@example.com", FirstName: "Bob", LastName: "", PhoneNumber: "+44 1"},
		"p3": {Email: "cy@example.com", FirstName: "Cy", LastName: "D", PhoneNumber: "2"},
	}
	for id, w := range want {
		p, err := flux.Load[*Person](ctx, repo, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.PersonSignedUp != w {
			t.Fatalf("%s = %+v, want %+v", id, p.PersonSignedUp, w)
		}
	}

	// Filtered reads by the current type find the old names too.
	n := 0
	for e, err := range repo.Events(ctx, "p1", &flux.EventsOptions{Types: []any{PersonSignedUp{}}}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.EventName != "UserRegistered" || e.EventVersion != 1 || e.Name != "PersonSignedUp" || e.Version != 3 {
			t.Fatalf("envelope names: stored %s v%d, current %s v%d", e.EventName, e.EventVersion, e.Name, e.Version)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("filtered read found %d events", n)
	}
	// The global log, filtered by the current name, too.
	n = 0
	for e, err := range repo.AllEvents(ctx, flux.ReadAllOptions{EventNames: []string{"PersonSignedUp"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Event.(PersonSignedUp) != want[e.StreamID] {
			t.Fatalf("global log %s = %+v", e.StreamID, e.Event)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("global log filter found %d events, want 3", n)
	}
	// Reading never rewrites what is stored.
	for r, err := range store.ReadStream(ctx, "p1", flux.ReadStreamOptions{}) {
		if err != nil || r.EventName != "UserRegistered" || r.EventVersion != 1 || string(r.Payload) != `{"email":"ada@example.com","name":"Ada Lovelace"}` {
			t.Fatalf("stored record changed: %s v%d %s (%v)", r.EventName, r.EventVersion, r.Payload, err)
		}
	}
}

func TestFailingUpcasterNamesStreamVersionAndEvent(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	repo := repoWith(t, store, personRegistry(t), nil)
	storeRaw(t, store, "p1", flux.NoStream, "UserRegistered", 1, `{"email":"secret@example.com"}`)
	_, err := flux.Load[*Person](t.Context(), repo, "p1")
	var ee *flux.EventError
	if !errors.Is(err, flux.ErrUpcast) || !errors.Is(err, errNoName) || !errors.As(err, &ee) ||
		ee.StreamID != "p1" || ee.StreamVersion != 1 || ee.EventName != "UserRegistered" || ee.EventVersion != 1 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "secret@example.com") {
		t.Fatalf("error quotes the payload: %v", err)
	}
	storeRaw(t, store, "p2", flux.NoStream, "UserRegistered", 1, `["not", "an", "object"]`)
	if _, err := flux.Load[*Person](t.Context(), repo, "p2"); !errors.Is(err, flux.ErrCorruptEvent) {
		t.Fatalf("non-object payload: err = %v", err)
	}
	storeRaw(t, store, "p3", flux.NoStream, "UserRegistered", 7, `{}`)
	if _, err := flux.Load[*Person](t.Context(), repo, "p3"); !errors.Is(err, flux.ErrUnknownEvent) {
		t.Fatalf("version without upcaster: err = %v", err)
	}
}

func TestUpcasterRegistrationErrors(t *testing.T) {
	t.Parallel()
	noop := func(*flux.Payload) error { return nil }
	newPerson := func() *Person { return new(Person) }
	cases := []struct {
		name string
		def  flux.Definition
		want string
	}{
		{"upcaster from the current version", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 2, flux.Upcast(1, noop), flux.Upcast(2, noop))), "versions are 1..2"},
		{"upcaster from version 0", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 2, flux.Upcast(0, noop), flux.Upcast(1, noop))), "from version 0"},
		{"a hole in the middle", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 4, flux.Upcast(1, noop), flux.Upcast(3, noop))), "no upcaster from version 2 to 3"},
		{"a hole before the current version", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 4, flux.Upcast(1, noop), flux.Upcast(2, noop))), "no upcaster from version 3 to the current version 4"},
		{"two upcasters from one version", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 3, flux.Upcast(1, noop), flux.Upcast(1, noop), flux.Upcast(2, noop))), "two upcasters from version 1"},
		{"a nil upcaster", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 2, flux.Upcast(1, nil))), "is nil"},
		{"an old name that is another event's current name", flux.AggregateType("Person", newPerson,
			flux.EventType[PersonSignedUp]("PersonSignedUp", 2, flux.UpcastRenamed("Greeted", 1, noop)),
			flux.EventType[Added]("Greeted", 1)), "claimed by both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := flux.NewRegistry(c.def)
			if !errors.Is(err, flux.ErrInvalidRegistry) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestPayloadEdits(t *testing.T) {
	t.Parallel()
	p, err := flux.ParsePayload([]byte(` { "a" : 1, "b":{"x":[1,2,{"y":"}"}]}, "c\"q":"é\u00e9", "n": null } `))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Keys(), ","); got != `a,b,c"q,n` {
		t.Fatalf("keys = %s", got)
	}
	if err := p.SetDefault("a", 5); err != nil { // present: untouched
		t.Fatal(err)
	}
	if err := p.SetDefault("n", "filled"); err != nil { // null: filled
		t.Fatal(err)
	}
	if err := p.SetDefault("d", []int{1}); err != nil { // missing: added
		t.Fatal(err)
	}
	p.Rename("a", "alpha")
	p.Rename("missing", "zzz")
	p.Delete("b")
	var got, want any
	if err := json.Unmarshal(p.Bytes(), &got); err != nil {
		t.Fatalf("Bytes() = %s: %v", p.Bytes(), err)
	}
	_ = json.Unmarshal([]byte(`{"alpha":1,"c\"q":"éé","n":"filled","d":[1]}`), &want)
	if !jsonDeepEqual(got, want) {
		t.Fatalf("edited payload = %s", p.Bytes())
	}
	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, `{"a":tru}`, "{\"a\":\"\n\"}", `{"a":1e}`, `{"a":[1,]}`} {
		if _, err := flux.ParsePayload([]byte(bad)); err == nil {
			t.Errorf("ParsePayload(%q) succeeded", bad)
		}
	}
}

func jsonDeepEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// FuzzParsePayload checks the shallow parser against encoding/json: every
// valid JSON object parses and re-encodes to an equal value, and nothing
// panics.
func FuzzParsePayload(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,"x",null,true]},"c":"\u00e9\\\""}`, `{"":""}`, `[1]`, `{"a":1,"a":2}`, ` {"k" : -1.5e+3 } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := flux.ParsePayload(data)
		var want map[string]json.RawMessage
		validObject := json.Valid(data) && json.Unmarshal(data, &want) == nil
		if err != nil {
			if validObject {
				t.Fatalf("ParsePayload rejected a valid object %q: %v", data, err)
			}
			return
		}
		out := p.Bytes()
		if !validObject {
			if json.Valid(out) {
				var x map[string]json.RawMessage
				if json.Unmarshal(out, &x) == nil && len(x) > 0 {
					// Invalid input must not come out as a valid, non-empty
					// object with different meaning; the only accepted
					// difference is duplicate-key or escape normalisation.
					return
				}
			}
			return
		}
		var a, b any
		if err := json.Unmarshal(data, &a); err != nil {
			return
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("re-encoded %q as invalid %q: %v", data, out, err)
		}
		if !jsonDeepEqual(a, b) {
			t.Fatalf("re-encoded %q as %q: different value", data, out)
		}
	})
}

// FuzzUpcast feeds random payloads of old versions through the upcaster
// chain: each read ends in an event or an *EventError naming the stream.
func FuzzUpcast(f *testing.F) {
	reg := personRegistry(f)
	f.Add("UserRegistered", 1, []byte(`{"email":"a@example.com","name":"A B"}`))
	f.Add("UserRegistered", 2, []byte(`{"name":7}`))
	f.Add("UserRegistered", 1, []byte(`{"name":"x","phoneNumber":null}`))
	f.Add("PersonSignedUp", 3, []byte(`{"email":1}`))
	f.Add("UserRegistered", 1, []byte(`{"name":"\ud800"}`))
	f.Fuzz(func(t *testing.T, name string, version int, payload []byte) {
		rec := flux.Record{StreamID: "s", StreamVersion: 9, EventName: name, EventVersion: version, Payload: payload}
		ev, err := reg.Decode(&rec)
		if err != nil {
			var ee *flux.EventError
			if !errors.As(err, &ee) || ee.StreamID != "s" || ee.StreamVersion != 9 || ee.EventName != name {
				t.Fatalf("err = %#v, want *flux.EventError naming stream s version 9 %q", err, name)
			}
			return
		}
		if _, ok := ev.(PersonSignedUp); !ok {
			t.Fatalf("decoded %T", ev)
		}
	})
}

func testNow() time.Time { return time.Now() }

// Tagged keeps a raw JSON field: decoding must copy it out of the buffer
// an upcast payload is encoded in, since that buffer is reused.
type Tagged struct {
	Label string          `json:"label"`
	Extra json.RawMessage `json:"extra"`
}

type TaggedThing struct{ flux.Root }

func (*TaggedThing) Apply(any) {}

func TestUpcastPayloadsDoNotAliasReusedBuffers(t *testing.T) {
	t.Parallel()
	reg, err := flux.NewRegistry(flux.AggregateType("Thing", func() *TaggedThing { return new(TaggedThing) },
		flux.EventType[Tagged]("Tagged", 2, flux.Upcast(1, func(p *flux.Payload) error {
			p.Rename("name", "label")
			return p.Set("extra", map[string]int{"n": 1})
		}))))
	if err != nil {
		t.Fatal(err)
	}
	decode := func(name string) Tagged {
		ev, err := reg.Decode(&flux.Record{StreamID: "s", StreamVersion: 1, EventName: "Tagged", EventVersion: 1,
			Payload: []byte(`{"name":"` + name + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return ev.(Tagged)
	}
	first := decode("first-label-of-some-length")
	for i := 0; i < 100; i++ {
		decode(fmt.Sprintf("overwrite-%03d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i))
	}
	if first.Label != "first-label-of-some-length" || string(first.Extra) != `{"n":1}` {
		t.Fatalf("the first event changed after later decodes: %+v (extra %s)", first, first.Extra)
	}
}

func TestPayloadStringAccessors(t *testing.T) {
	t.Parallel()
	p, err := flux.ParsePayload([]byte(`{"plain":"abc","escaped":"a\"b\u00e9","n":7}`))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"plain": "abc", "escaped": "a\"bé"} {
		if got, err := p.StringValue(key); err != nil || got != want {
			t.Errorf("StringValue(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	if _, err := p.StringValue("n"); err == nil {
		t.Error("StringValue of a number succeeded")
	}
	if _, err := p.StringValue("missing"); err == nil {
		t.Error("StringValue of a missing field succeeded")
	}
	p.SetString("plain", "x<y & \"z\"\n")
	p.SetString("added", "simple")
	var back map[string]any
	if err := json.Unmarshal(p.Bytes(), &back); err != nil {
		t.Fatalf("%s: %v", p.Bytes(), err)
	}
	if back["plain"] != "x<y & \"z\"\n" || back["added"] != "simple" || back["n"] != float64(7) {
		t.Fatalf("after SetString: %s", p.Bytes())
	}
}
