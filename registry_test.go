package flux_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
)

type Other struct{ flux.Root }

func (*Other) Apply(any) {}

type OtherHappened struct{}

func TestNewRegistryRejectsBadDefinitions(t *testing.T) {
	t.Parallel()
	newUser := func() *User { return new(User) }
	cases := []struct {
		name string
		defs []flux.Definition
		want string
	}{
		{"an aggregate name registered twice", []flux.Definition{
			flux.AggregateType("User", newUser),
			flux.AggregateType("User", func() *Other { return new(Other) }),
		}, `aggregate type "User" registered twice`},
		{"a Go aggregate type registered twice", []flux.Definition{
			flux.AggregateType("User", newUser),
			flux.AggregateType("Person", newUser),
		}, `registered as aggregate "User" and "Person"`},
		{"an event name registered twice", []flux.Definition{
			flux.AggregateType("User", newUser, flux.EventType[UserRegistered]("Happened", 1)),
			flux.AggregateType("Other", func() *Other { return new(Other) }, flux.EventType[OtherHappened]("Happened", 1)),
		}, `event name "Happened" registered twice (aggregates "User" and "Other")`},
		{"a Go event type registered twice", []flux.Definition{
			flux.AggregateType("User", newUser,
				flux.EventType[UserRegistered]("UserRegistered", 1),
				flux.EventType[UserRegistered]("UserCreated", 1)),
		}, `registered as event "UserRegistered" and "UserCreated"`},
		{"a pointer event type", []flux.Definition{
			flux.AggregateType("User", newUser, flux.EventType[*UserRegistered]("UserRegistered", 1)),
		}, "want a struct"},
		{"a schema version below 1", []flux.Definition{
			flux.AggregateType("User", newUser, flux.EventType[UserRegistered]("UserRegistered", 0)),
		}, "schema version 0"},
		{"an empty event name", []flux.Definition{
			flux.AggregateType("User", newUser, flux.EventType[UserRegistered]("", 1)),
		}, "event name is empty"},
		{"an empty aggregate name", []flux.Definition{flux.AggregateType("", newUser)}, "aggregate type is empty"},
		{"a nil constructor", []flux.Definition{flux.AggregateType[*User]("User", nil)}, "constructor is nil"},
		{"a constructor returning nil", []flux.Definition{flux.AggregateType("User", func() *User { return nil })}, "returns nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := flux.NewRegistry(c.defs...)
			if !errors.Is(err, flux.ErrInvalidRegistry) {
				t.Fatalf("err = %v, want ErrInvalidRegistry", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestNewRegistryReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := flux.NewRegistry(
		flux.AggregateType("User", func() *User { return new(User) },
			flux.EventType[UserRegistered]("", 1),
			flux.EventType[UserRenamed]("UserRenamed", -1)),
	)
	if err == nil || !strings.Contains(err.Error(), "event name is empty") || !strings.Contains(err.Error(), "schema version -1") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestRegistryLookups(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	if name, v, err := reg.EventName(UserRenamed{}); err != nil || name != "UserRenamed" || v != 1 {
		t.Fatalf("EventName = %q %d %v", name, v, err)
	}
	if _, _, err := reg.EventName(&UserRenamed{}); !errors.Is(err, flux.ErrUnknownEvent) || !strings.Contains(err.Error(), "not pointers") {
		t.Fatalf("EventName(pointer) err = %v", err)
	}
	if _, _, err := reg.EventName(OtherHappened{}); !errors.Is(err, flux.ErrUnknownEvent) {
		t.Fatalf("EventName(unregistered) err = %v", err)
	}
	if got := reg.AggregateTypeOf("UserRenamed"); got != "User" {
		t.Fatalf("AggregateTypeOf = %q", got)
	}
	if got := reg.AggregateTypeOf("Nope"); got != "" {
		t.Fatalf("AggregateTypeOf(unknown) = %q", got)
	}
	if got := strings.Join(reg.EventNames(), ","); got != "UserRegistered,UserRenamed" {
		t.Fatalf("EventNames = %s", got)
	}
	if got := strings.Join(reg.AggregateTypes(), ","); got != "User" {
		t.Fatalf("AggregateTypes = %s", got)
	}
	a, err := reg.New("User")
	if _, ok := a.(*User); err != nil || !ok {
		t.Fatalf("New = %T, %v", a, err)
	}
	if _, err := reg.New("Ghost"); !errors.Is(err, flux.ErrUnknownAggregate) {
		t.Fatalf("New(unknown) err = %v", err)
	}
}

func TestDecodeErrorsNameTheEventNotTheValue(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	cases := []struct {
		name string
		rec  flux.Record
		want error
	}{
		{"unknown name", flux.Record{StreamID: "u1", StreamVersion: 3, EventName: "UserDeleted", EventVersion: 1, Payload: []byte(`{}`)}, flux.ErrUnknownEvent},
		{"unknown version", flux.Record{StreamID: "u1", StreamVersion: 3, EventName: "UserRenamed", EventVersion: 7, Payload: []byte(`{}`)}, flux.ErrUnknownEvent},
		{"wrong JSON type", flux.Record{StreamID: "u1", StreamVersion: 3, EventName: "UserRenamed", EventVersion: 1, Payload: []byte(`{"name":["secret-value"]}`)}, flux.ErrCorruptEvent},
		{"broken JSON", flux.Record{StreamID: "u1", StreamVersion: 3, EventName: "UserRenamed", EventVersion: 1, Payload: []byte(`{"name":"secret-value`)}, flux.ErrCorruptEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := reg.Decode(&c.rec)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var ee *flux.EventError
			if !errors.As(err, &ee) || ee.StreamID != "u1" || ee.StreamVersion != 3 || ee.EventName != c.rec.EventName {
				t.Fatalf("err = %#v, want *flux.EventError naming stream u1 version 3 %s", err, c.rec.EventName)
			}
			if strings.Contains(err.Error(), "secret-value") {
				t.Fatalf("error quotes the payload: %v", err)
			}
		})
	}
}
