package flux_test

import (
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// FuzzDecode feeds arbitrary stored records to the registry's decoder: it
// must return an event or an *EventError naming the stream, never panic.
func FuzzDecode(f *testing.F) {
	reg := newRegistry()
	f.Add("UserRegistered", 1, []byte(`{"email":"a@example.com","name":"A"}`))
	f.Add("UserRenamed", 1, []byte(`{"name":"B"}`))
	f.Add("UserRenamed", 1, []byte(`{"name":null}`))
	f.Add("UserRenamed", 2, []byte(`{}`))
	f.Add("Nope", 1, []byte(`[]`))
	f.Add("UserRegistered", 1, []byte(`{"email":1e400}`))
	f.Add("UserRegistered", 1, []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, name string, version int, payload []byte) {
		rec := flux.Record{StreamID: "s", StreamVersion: 1, EventName: name, EventVersion: version, Payload: payload}
		ev, err := reg.Decode(&rec)
		if err != nil {
			var ee *flux.EventError
			if !errors.As(err, &ee) || ee.StreamID != "s" {
				t.Fatalf("err = %#v, want *flux.EventError", err)
			}
			if !errors.Is(err, flux.ErrUnknownEvent) && !errors.Is(err, flux.ErrCorruptEvent) {
				t.Fatalf("err = %v matches neither ErrUnknownEvent nor ErrCorruptEvent", err)
			}
			return
		}
		switch ev.(type) {
		case UserRegistered, UserRenamed:
		default:
			t.Fatalf("decoded %T", ev)
		}
	})
}
