package flux_test

import (
	"testing"

	"github.com/fluxcapacitor/flux"
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
